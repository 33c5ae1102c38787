import type { IncomingMessage, ServerResponse } from 'node:http';
import { MarinerError } from '../lib/errors.js';
import type { InferencePlane } from '../lib/inferencePlane.js';
import {
  AudioTooLargeError,
  isTranscriptionFormat,
  MAX_AUDIO_BYTES,
  MAX_TRANSCRIPTION_FORM_BYTES,
  readTranscriptionForm,
  TRANSCRIPTION_FORMATS,
  type TranscriptionForm,
} from '../lib/transcription.js';
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
 *
 * The caller is authenticated and authorized before a byte of the body is read (InferencePlane.refusal):
 * a caller who may not transcribe gets the refusal at once, and nothing of their upload is held (the REST
 * layer reads a small unread body to its end and throws it away, and closes the connection on a large
 * one). A body whose Content-Length is over the limit is refused the same way, and one that grows past it
 * while read (chunked) as soon as it does: 413 in OpenAI's error shape.
 */

/** 413, OpenAI's shape, naming the file. */
const tooLarge = () =>
  new RestError(
    413,
    `The audio file is larger than the limit of ${MAX_AUDIO_BYTES} bytes (${MAX_AUDIO_BYTES / 1024 / 1024} MiB)`,
    'invalid_request_error',
    'file',
    'file_too_large',
  );

export function audioRoutes({ inference, streams }: { inference: InferencePlane; streams: OpenStreams }) {
  async function transcribe(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const refusal = await inference.refusal(req, { kind: 'transcription', request: {}, requestId: ctx.requestId });
    if (refusal) throw RestError.fromCode(refusal.code, refusal.message, refusal.field ?? null);
    if (Number(req.headers['content-length']) > MAX_TRANSCRIPTION_FORM_BYTES) throw tooLarge();
    let form: TranscriptionForm;
    try {
      form = await readTranscriptionForm(req.headers, req, MAX_AUDIO_BYTES);
    } catch (error) {
      if (error instanceof AudioTooLargeError) throw tooLarge();
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
