import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson } from '../lib/http.js';

/**
 * The OpenAI-compatible REST surface (`/v1/...`). Endpoints arrive with the files/models issue;
 * until then every path answers as OpenAI does for an unknown URL.
 */
export interface RestCompat {
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
}

export function createRestCompat(): RestCompat {
  return {
    async handle(req, res) {
      const path = new URL(req.url ?? '/', 'http://rest').pathname;
      // OpenAI API: unknown routes answer 404 with the standard error object.
      sendJson(res, 404, {
        error: { message: `Invalid URL (${req.method ?? 'GET'} ${path})`, type: 'invalid_request_error', param: null, code: null },
      });
    },
  };
}
