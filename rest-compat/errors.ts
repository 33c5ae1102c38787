import type { ServerResponse } from 'node:http';
import { ErrorCode, isErrorCode, openAIErrorCodeFor, openAIErrorTypeFor, openAIStatusFor } from '../lib/errors.js';
import { sendJson } from '../lib/http.js';

/** OpenAI API: the error object. */
export interface OpenAIError {
  message: string;
  type: string;
  param: string | null;
  code: string | null;
}

/** An error to answer in the OpenAI shape, from a route or from the gateway's GraphQL error. */
export class RestError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }

  /** Seconds for a Retry-After header (a model shut down by its scaling schedule); null: the route's default. */
  retryAfterSeconds: number | null = null;

  static fromCode(code: ErrorCode, message: string, param: string | null = null): RestError {
    return new RestError(openAIStatusFor(code), message, openAIErrorTypeFor(code), param, openAIErrorCodeFor(code));
  }

  static badRequest(message: string, param: string | null = null): RestError {
    return RestError.fromCode(ErrorCode.BAD_USER_INPUT, message, param);
  }

  static notFound(message: string): RestError {
    return RestError.fromCode(ErrorCode.NOT_FOUND, message);
  }

  body(): { error: OpenAIError } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A GraphQL error from the gateway, as the REST error its code maps to. */
export function restErrorFromGraphQL(error: { message: string; extensions?: Record<string, unknown> }): RestError {
  const code = isErrorCode(error.extensions?.['code']) ? (error.extensions['code'] as ErrorCode) : ErrorCode.INTERNAL;
  const field = typeof error.extensions?.['field'] === 'string' ? (error.extensions['field'] as string) : null;
  // GraphQL arguments are camelCase under `input.`; the REST parameters are OpenAI's snake_case.
  const param = field ? field.replace(/^input\./, '').replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`) : null;
  const restError = RestError.fromCode(code, error.message, param);
  const retryAfter = error.extensions?.['retryAfterSeconds'];
  if (typeof retryAfter === 'number') restError.retryAfterSeconds = retryAfter;
  return restError;
}

export function sendRestError(res: ServerResponse, error: RestError, headers: Record<string, string> = {}): void {
  sendJson(res, error.status, error.body(), headers);
}
