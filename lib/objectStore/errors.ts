/** The object store's own errors; callers map them to Mariner's error codes (lib/errors.ts). */

export class ObjectNotFoundError extends Error {
  override name = 'ObjectNotFoundError';
  constructor(readonly key: string) {
    super(`Object ${key} not found`);
  }
}

export class ObjectTooLargeError extends Error {
  override name = 'ObjectTooLargeError';
  constructor(readonly limit: number) {
    super(`Object is larger than ${limit} bytes`);
  }
}

export class InvalidObjectKeyError extends Error {
  override name = 'InvalidObjectKeyError';
  constructor(
    readonly key: string,
    reason: string,
  ) {
    super(`Invalid object key ${JSON.stringify(key.length > 100 ? `${key.slice(0, 100)}…` : key)}: ${reason}`);
  }
}
