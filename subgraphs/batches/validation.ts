import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { badInput } from '../../lib/errors.js';
import { MarinerError } from '../../lib/errors.js';
import type { InferenceKind } from '../../lib/inferencePlane.js';
import type { BatchRequestInput } from './store.js';
import { isJsonObject } from '../../lib/jsonObject.js';
import { readResponseRequest } from '../../lib/responseRequest.js';

/** What a line of a batch runs: an inference of the data plane, or a response (made of a chat completion: requestRunner.ts). */
export type BatchKind = Exclude<InferenceKind, 'transcription'> | 'response';

/** The endpoints a batch may name, and the inference each line is (OpenAI API: create batch). */
export const BATCH_ENDPOINTS: Readonly<Record<string, BatchKind>> = {
  '/v1/chat/completions': 'chat',
  '/v1/completions': 'completion',
  '/v1/embeddings': 'embedding',
  '/v1/responses': 'response',
};

/** Endpoints OpenAI batches serve that Mariner's do not (yet): refused by name rather than as unknown. */
const NOT_SERVED: Readonly<Record<string, string>> = {
  '/v1/moderations': 'Mariner serves no moderations',
  '/v1/images/generations': 'Mariner serves no image generation',
  '/v1/images/edits': 'Mariner serves no image edits',
  '/v1/videos': 'Mariner serves no video generation',
};

export function validEndpoint(endpoint: string): BatchKind {
  const kind = BATCH_ENDPOINTS[endpoint];
  if (kind) return kind;
  const supported = Object.keys(BATCH_ENDPOINTS).join(', ');
  const why = NOT_SERVED[endpoint];
  throw badInput(why ? `endpoint: ${why} (supported: ${supported})` : `endpoint: "${endpoint.slice(0, 80)}" is not one of ${supported}`, 'endpoint');
}

/** OpenAI API: only `24h`. */
export function validCompletionWindow(window: string): string {
  if (window !== '24h') throw badInput(`completion_window: only "24h" is supported, not "${window.slice(0, 20)}"`, 'completion_window');
  return window;
}

/** OpenAI metadata: up to 16 pairs, keys ≤ 64 characters, string values ≤ 512. */
export function validMetadata(value: unknown): Record<string, string> | null {
  if (value === null || value === undefined) return null;
  if (typeof value !== 'object' || Array.isArray(value)) throw badInput('metadata must be an object of strings', 'metadata');
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > 16) throw badInput('metadata: at most 16 pairs', 'metadata');
  for (const [key, v] of entries) {
    if (key.length > 64) throw badInput(`metadata: the key "${key.slice(0, 20)}…" is longer than 64 characters`, 'metadata');
    if (typeof v !== 'string' || v.length > 512) throw badInput(`metadata.${key} must be a string of at most 512 characters`, 'metadata');
  }
  return value as Record<string, string>;
}

/** The longest line read (OpenAI allows a 200 MB file; one request of it is far smaller). */
const MAX_LINE_BYTES = 8 * 1024 * 1024;
const MAX_CUSTOM_ID = 512;

/** Why a line's body cannot be a request of this kind, or null (the runtime checks the rest when it runs). */
function bodyProblem(kind: BatchKind, body: Record<string, unknown>): string | null {
  if (typeof body['model'] !== 'string' || body['model'] === '') return 'body.model must be a model id';
  if (body['stream'] !== undefined && body['stream'] !== false) return 'body.stream: batch requests do not stream';
  if (kind === 'chat' && !(Array.isArray(body['messages']) && body['messages'].length > 0)) return 'body.messages must be a non-empty list';
  if (kind === 'completion' && body['prompt'] === undefined) return 'body.prompt is required';
  if (kind === 'embedding' && body['input'] === undefined) return 'body.input is required';
  if (kind === 'response') return responseProblem(body);
  return null;
}

/**
 * A `/v1/responses` body checked as POST /v1/responses checks it (lib/responseRequest.ts), less what a
 * batch line cannot do here: continue a stored response (`previous_response_id`: it would read the
 * responses subgraph as the creator while the batch runs) or search vector stores (`file_search`).
 */
function responseProblem(body: Record<string, unknown>): string | null {
  let request;
  try {
    request = readResponseRequest(body);
  } catch (error) {
    if (error instanceof MarinerError) return `body.${String(error.extensions['field'] ?? 'input')}: ${error.message}`;
    throw error;
  }
  if (request.previousResponseId) return 'body.previous_response_id: batch responses do not continue stored responses; send the conversation as input';
  if (request.fileSearch) return 'body.tools: the file_search tool is not run in batches; call /v1/responses directly';
  return null;
}

/**
 * Reads and checks every line of a batch's input file before anything runs (OpenAI API: the batch
 * request input object): a JSON object with a unique `custom_id`, `method` POST, the batch's `url`,
 * and a `body` for that endpoint. The first bad line is refused with its number, and no batch is made.
 * Blank lines are skipped (they keep their numbers).
 */
export async function readBatchRequests(
  input: Readable,
  endpoint: string,
  maxRequests: number,
): Promise<{ requests: BatchRequestInput[]; model: string | null }> {
  const kind = validEndpoint(endpoint);
  const requests: BatchRequestInput[] = [];
  const customIds = new Set<string>();
  const models = new Set<string>();
  const refuse = (line: number, why: string) => badInput(`input_file_id: line ${line}: ${why}`, 'input_file_id');
  let line = 0;
  const lines = createInterface({ input, crlfDelay: Infinity });
  try {
    for await (const text of lines) {
      line++;
      if (text.trim() === '') continue;
      if (Buffer.byteLength(text) > MAX_LINE_BYTES) throw refuse(line, `longer than ${MAX_LINE_BYTES} bytes`);
      if (requests.length >= maxRequests) throw refuse(line, `a batch holds at most ${maxRequests} requests`);
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw refuse(line, 'not valid JSON');
      }
      if (!isJsonObject(parsed)) throw refuse(line, 'must be a JSON object with custom_id, method, url and body');
      const customId = parsed['custom_id'];
      if (typeof customId !== 'string' || customId === '' || customId.length > MAX_CUSTOM_ID) {
        throw refuse(line, `custom_id must be a string of 1 to ${MAX_CUSTOM_ID} characters`);
      }
      if (customIds.has(customId)) throw refuse(line, `custom_id "${customId.slice(0, 64)}" is used twice in the file`);
      if (parsed['method'] !== 'POST') throw refuse(line, 'method must be "POST"');
      if (parsed['url'] !== endpoint) throw refuse(line, `url must be the batch's endpoint ${endpoint}, not ${JSON.stringify(parsed['url'])?.slice(0, 80)}`);
      const body = parsed['body'];
      if (!isJsonObject(body)) throw refuse(line, 'body must be a JSON object');
      const problem = bodyProblem(kind, body);
      if (problem) throw refuse(line, problem);
      customIds.add(customId);
      models.add(body['model'] as string);
      requests.push({ line, customId, body });
    }
  } finally {
    lines.close();
    input.destroy();
  }
  if (requests.length === 0) throw badInput('input_file_id: the file holds no requests', 'input_file_id');
  return { requests, model: models.size === 1 ? [...models][0]! : null };
}
