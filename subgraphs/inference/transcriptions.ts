import { badInput } from '../../lib/errors.js';
import { encodeTranscriptionForm, isTranscriptionFormat, TRANSCRIPTION_FORMATS, type AudioUpload } from '../../lib/transcription.js';
import { Metering, runtimeError, servableModel, statusOfError, usageOf, type RoutedCompletion, type WholeAnswer } from './completions.js';
import type { InferenceContext } from './context.js';
import { forwardToModel } from './refusedModels.js';
import { RawBody } from './router.js';

/**
 * An audio transcription (OpenAI API `POST /v1/audio/transcriptions`) through what a completion goes
 * through (completions.ts): the form checked, the caller admitted against its rate limit, the model
 * found servable (visible to the caller's project, loaded, active), a runtime chosen, and the form sent
 * on as multipart — to vLLM serving a Whisper model on Kubernetes, or the local executor's whisper.cpp
 * runtime (agent/runtimes/whisperServer.ts). The runtime writes the asked format.
 */
export async function routeTranscription(
  ctx: InferenceContext,
  fields: Record<string, unknown>,
  audio: AudioUpload | undefined,
  signal?: AbortSignal,
): Promise<RoutedCompletion> {
  const model = typeof fields['model'] === 'string' ? fields['model'].trim() : '';
  if (!model) throw badInput('model is required', 'model');
  if (!audio) throw badInput('file is required: the audio file to transcribe', 'file');
  const format = fields['response_format'] ?? 'json';
  if (!isTranscriptionFormat(format)) throw badInput(`response_format must be one of ${TRANSCRIPTION_FORMATS.join(', ')}`, 'response_format');
  const meter = new Metering(ctx, 'transcription', model);
  try {
    await meter.admit();
    const modelId = await servableModel(ctx, model);
    const form = encodeTranscriptionForm({ ...fields, model: modelId, response_format: format }, audio);
    const routed = await forwardToModel(ctx, modelId, '/v1/audio/transcriptions', new RawBody(form.contentType, form.body), signal);
    if (routed.status >= 400) throw await runtimeError(routed);
    return { routed, meter, hideUsage: false };
  } catch (error) {
    meter.failed(statusOfError(error));
    throw error;
  }
}

/**
 * What a transcription's answer, read whole, is passed on as: the runtime's content type (JSON, text,
 * SRT or WebVTT), and the usage when the answer is JSON that carries one.
 */
export function transcriptionAnswer(routed: RoutedCompletion, bytes: Buffer): WholeAnswer {
  const contentType = String(routed.routed.headers['content-type'] ?? 'application/json');
  if (!contentType.startsWith('application/json')) return { contentType, usage: null };
  try {
    return { contentType, usage: usageOf(JSON.parse(bytes.toString('utf8'))) };
  } catch {
    return { contentType, usage: null };
  }
}
