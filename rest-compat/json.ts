import type { IncomingMessage } from 'node:http';
import { BodyTooLargeError, readBody } from '../lib/http.js';
import { RestError } from './errors.js';

const MAX_JSON_BYTES = 1024 * 1024;

import { isJsonObject, type JsonObject } from '../lib/jsonObject.js';

export { isJsonObject, type JsonObject };

/** A JSON object request body; 400 for anything else, 413 past `maxBytes` (1 MiB). An empty body is `{}`. */
export async function readJsonBody(req: IncomingMessage, maxBytes = MAX_JSON_BYTES): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readBody(req, maxBytes);
  } catch (error) {
    if (error instanceof BodyTooLargeError) throw new RestError(413, error.message, 'invalid_request_error', null, 'request_too_large');
    throw error;
  }
  if (text.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw RestError.badRequest('The request body is not valid JSON');
  }
  if (!isJsonObject(parsed)) {
    throw RestError.badRequest('The request body must be a JSON object');
  }
  return parsed;
}
