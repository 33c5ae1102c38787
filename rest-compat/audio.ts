import type { IncomingMessage, ServerResponse } from 'node:http';
import { MarinerError } from '../lib/errors.js';
import type { InferencePlane } from '../lib/inferencePlane.js';
import { isTranscriptionFormat, MAX_AUDIO_BYTES, readTranscriptionForm, TRANSCRIPTION_FORMATS, type TranscriptionForm } from '../lib/transcription.js';
import { RestError } from './errors.js';
import { clientSink } from './inference.js';
import type { OpenStreams } from './openStreams.js';
import type { RouteContext } from './router.js';

/**
 * OpenAI `POST /v1/audio/transcriptions` (multipart: `file`, `model`, `response_format` json | text |
 * verbose_json | srt | vtt, `language`, `prompt`, `temperature`). The form is read once (the file in
 * memory, at most OpenAI's 25 MB: the model may come after the file, and routing needs it first) and
 * goes through the gateway's inference data plane as a `transcription` (lib/inferencePlane.ts): the same
 * authentication, policy rule (`api.model` write, as chat completions), rate limit and usage record
 * as a completion. The runtime's answer comes back in the asked format with its content type.
 */
export function audioRoutes({ inference, streams }: { inference: InferencePlane; streams: OpenStreams }) {
  async function transcribe(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    let form: TranscriptionForm;
    try {
      form = await readTranscriptionForm(req.headers, req, MAX_AUDIO_BYTES);
    } catch (error) {
      if (error instanceof MarinerError) throw RestError.badRequest(error.message, (error.extensions['field'] as string | undefined) ?? 'file');
      throw error;
    }
    const { fields, audio } = form;
    if (!audio) throw RestError.badRequest('Missing the "file" field: the audio file to transcribe (WAV, MP3 or FLAC)', 'file');
    if (!fields['model']?.trim()) throw RestError.badRequest('Missing the "model" field', 'model');
    const format = fields['response_format'];
    if (format !== undefined && !isTranscriptionFormat(format)) {
      throw RestError.badRequest(`response_format must be one of ${TRANSCRIPTION_FORMATS.join(', ')}`, 'response_format');
    }
    if (fields['stream'] === 'true') throw RestError.badRequest('Streamed transcriptions are not supported', 'stream');
    await new Promise<void>((resolve, reject) => {
      const sink = clientSink(res, ctx, streams, resolve);
      inference.send(req, { kind: 'transcription', request: fields, audio, requestId: ctx.requestId }, sink).catch(reject);
    });
  }
  return [{ method: 'POST', path: '/v1/audio/transcriptions', handler: transcribe }];
}
