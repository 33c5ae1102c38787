import { badInput, failedPrecondition, notFound } from '../../lib/errors.js';
import type { InternalTokens } from '../../lib/identity.js';
import { asCaller, createInternalClient } from '../../lib/internalClient.js';
import type { ObjectStore } from '../../lib/objectStore/index.js';
import {
  encodeTranscriptionForm,
  isTranscriptionFormat,
  MAX_AUDIO_BYTES,
  TRANSCRIPTION_FORMATS,
  type AudioUpload,
  type TranscriptSegment,
} from '../../lib/transcription.js';
import { Metering, runtimeError, servableModel, statusOfError, usageOf, type RoutedCompletion, type WholeAnswer } from './completions.js';
import type { InferenceContext } from './context.js';
import { TranscriptionAudioFileDocument } from './generated/filesOperations.js';
import type { CreateTranscriptionInput } from './generated/resolvers.js';
import { forwardToModel } from './refusedModels.js';
import { readJson, RawBody } from './router.js';

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

/** The audio files createTranscription reads: a File of the caller's project (files subgraph, as the caller), its bytes from the object store. */
export interface TranscriptionAudio {
  read(ctx: InferenceContext, fileId: string): Promise<AudioUpload>;
}

export function createTranscriptionAudio(options: { url: () => string; tokens: InternalTokens; objectStore: ObjectStore }): TranscriptionAudio {
  const files = createInternalClient({ subgraph: 'files', url: options.url, tokens: options.tokens });
  return {
    async read(ctx, fileId) {
      // The files subgraph answers null for another project's file, as for one that does not exist.
      const { file } = await files.request(asCaller(ctx), TranscriptionAudioFileDocument, { id: fileId });
      if (!file) throw notFound('file', fileId);
      if (file.status === 'ERROR') throw failedPrecondition(`file ${fileId} failed to upload`);
      if (file.bytes > MAX_AUDIO_BYTES) throw badInput(`The audio file is larger than the limit of ${MAX_AUDIO_BYTES} bytes`, 'input.fileId');
      const chunks: Buffer[] = [];
      for await (const chunk of await options.objectStore.get(file.objectKey)) chunks.push(chunk as Buffer);
      return { data: Buffer.concat(chunks), filename: file.filename, contentType: 'application/octet-stream' };
    },
  };
}

/**
 * GraphQL `createTranscription`: an uploaded File transcribed as POST /v1/audio/transcriptions does it
 * (routeTranscription: the same admission, model check and runtime), asked as verbose_json and answered
 * with its typed fields; the usage recorded as the data plane records it.
 */
export async function transcribeFile(
  ctx: InferenceContext,
  input: CreateTranscriptionInput,
): Promise<{ text: string; language: string | null; duration: number | null; segments: TranscriptSegment[] }> {
  if (!ctx.transcriptionAudio) throw failedPrecondition('transcriptions of uploaded files need the files component and an object store');
  const audio = await ctx.transcriptionAudio.read(ctx, input.fileId);
  const fields: Record<string, string> = { model: input.model, response_format: 'verbose_json' };
  if (input.language) fields['language'] = input.language;
  if (input.prompt) fields['prompt'] = input.prompt;
  if (input.temperature !== null && input.temperature !== undefined) fields['temperature'] = String(input.temperature);
  const { routed, meter } = await routeTranscription(ctx, fields, audio);
  try {
    const answer = (await readJson(routed.stream)) as {
      text?: unknown;
      language?: unknown;
      duration?: unknown;
      segments?: { start?: unknown; end?: unknown; text?: unknown }[];
    };
    await meter.succeeded(usageOf(answer));
    return {
      text: typeof answer.text === 'string' ? answer.text : '',
      language: typeof answer.language === 'string' ? answer.language : null,
      duration: typeof answer.duration === 'number' ? answer.duration : null,
      segments: (answer.segments ?? []).map((segment) => ({
        start: Number(segment.start ?? 0),
        end: Number(segment.end ?? 0),
        text: String(segment.text ?? ''),
      })),
    };
  } catch (error) {
    meter.failed(statusOfError(error));
    throw error;
  }
}
