import { GraphQLError } from 'graphql';

/**
 * The closed set of error codes Mariner returns. Anything else is masked to INTERNAL.
 * Each maps once to an HTTP status and to the OpenAI error `type` (rest-compat).
 */
export const ErrorCode = {
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  FORBIDDEN: 'FORBIDDEN',
  BAD_USER_INPUT: 'BAD_USER_INPUT',
  NOT_FOUND: 'NOT_FOUND',
  CONFLICT: 'CONFLICT',
  FAILED_PRECONDITION: 'FAILED_PRECONDITION',
  RATE_LIMITED: 'RATE_LIMITED',
  /** A token budget of the caller's key or project is spent until its period resets (OpenAI: `insufficient_quota`). */
  QUOTA_EXCEEDED: 'QUOTA_EXCEEDED',
  /** Nothing can serve the request right now (no runtime of the model is ready); retry later. */
  UNAVAILABLE: 'UNAVAILABLE',
  INTERNAL: 'INTERNAL',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const HTTP_STATUS: Record<ErrorCode, number> = {
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  BAD_USER_INPUT: 400,
  NOT_FOUND: 404,
  CONFLICT: 409,
  FAILED_PRECONDITION: 412,
  RATE_LIMITED: 429,
  QUOTA_EXCEEDED: 429,
  UNAVAILABLE: 503,
  INTERNAL: 500,
};

/** OpenAI API error `type` values (OpenAI API: error object). */
const OPENAI_TYPE: Record<ErrorCode, string> = {
  UNAUTHENTICATED: 'invalid_request_error',
  FORBIDDEN: 'invalid_request_error',
  BAD_USER_INPUT: 'invalid_request_error',
  NOT_FOUND: 'invalid_request_error',
  CONFLICT: 'invalid_request_error',
  FAILED_PRECONDITION: 'invalid_request_error',
  RATE_LIMITED: 'rate_limit_exceeded',
  QUOTA_EXCEEDED: 'insufficient_quota',
  UNAVAILABLE: 'server_error',
  INTERNAL: 'server_error',
};

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(HTTP_STATUS, value);
}

export function httpStatusFor(code: ErrorCode): number {
  return HTTP_STATUS[code];
}

export function openAIErrorTypeFor(code: ErrorCode): string {
  return OPENAI_TYPE[code];
}

/** HTTP statuses of the OpenAI REST surface: OpenAI has no 412, a failed precondition is a 400 there. */
export function openAIStatusFor(code: ErrorCode): number {
  return code === 'FAILED_PRECONDITION' ? 400 : HTTP_STATUS[code];
}

/** OpenAI API: the `code` of an error object, for one of ours. */
export function openAIErrorCodeFor(code: ErrorCode): string | null {
  if (code === ErrorCode.UNAUTHENTICATED) return 'invalid_api_key';
  if (code === ErrorCode.INTERNAL) return null;
  // OpenAI API: a 429's code is `rate_limit_exceeded`.
  if (code === ErrorCode.RATE_LIMITED) return 'rate_limit_exceeded';
  if (code === ErrorCode.QUOTA_EXCEEDED) return 'insufficient_quota';
  return code.toLowerCase();
}

/**
 * OpenAI API: the error object of an answer (or of the event that ends a stream) for one of our codes.
 * `param` is the request parameter at fault, in OpenAI's snake_case.
 */
export function openAIErrorBody(code: ErrorCode, message: string, param: string | null = null) {
  return { error: { message, type: openAIErrorTypeFor(code), param, code: openAIErrorCodeFor(code) } };
}

/** A GraphQL error carrying one of the closed codes (and, for bad input, the offending argument). */
export class MarinerError extends GraphQLError {
  readonly code: ErrorCode;
  /** `retryAfterSeconds`: when to try again (an UNAVAILABLE model shut down by its schedule); REST sends it as Retry-After. */
  constructor(code: ErrorCode, message: string, extra: { field?: string; retryAfterSeconds?: number } = {}) {
    super(message, {
      extensions: {
        code,
        ...(extra.field ? { field: extra.field } : {}),
        ...(extra.retryAfterSeconds !== undefined ? { retryAfterSeconds: extra.retryAfterSeconds } : {}),
      },
    });
    this.code = code;
  }
}

export const unauthenticated = (message = 'Authentication required: send Authorization: Bearer <API key or OIDC token>') =>
  new MarinerError(ErrorCode.UNAUTHENTICATED, message);
export const forbidden = (message: string) => new MarinerError(ErrorCode.FORBIDDEN, message);
export const badInput = (message: string, field?: string) => new MarinerError(ErrorCode.BAD_USER_INPUT, message, field ? { field } : {});
export const notFound = (what: string, id: string) => new MarinerError(ErrorCode.NOT_FOUND, `${what} ${id} not found`);
export const conflict = (message: string) => new MarinerError(ErrorCode.CONFLICT, message);
export const failedPrecondition = (message: string) => new MarinerError(ErrorCode.FAILED_PRECONDITION, message);
