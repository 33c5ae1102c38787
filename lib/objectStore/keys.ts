import { InvalidObjectKeyError } from './errors.js';

/** S3's limit on a key's UTF-8 length (Amazon S3 User Guide: "Naming Amazon S3 objects"). */
export const MAX_OBJECT_KEY_BYTES = 1024;

/**
 * The filesystem driver writes in-flight objects under `<dir>/.tmp/`; keys there are refused on every driver so
 * that a key means the same thing whichever driver stores it.
 */
export const RESERVED_TOP_LEVEL_SEGMENT = '.tmp';

// C0 controls (NUL included), DEL, backslashes, and lone UTF-16 surrogates (not valid UTF-8).
const FORBIDDEN_CHARACTERS = /[\u0000-\u001f\u007f\\]|[\uD800-\uDFFF]/u;

/**
 * Checks a key and returns it unchanged: `/`-separated segments, none empty, `.` or `..`, no leading `/`,
 * no backslashes or control characters, at most 1024 UTF-8 bytes, not under the reserved `.tmp/`.
 * Keys map to paths on the filesystem driver, so this is what keeps a key inside the store.
 */
export function validateObjectKey(key: string): string {
  checkCharacters(key, 'key');
  if (key === '') throw new InvalidObjectKeyError(key, 'empty');
  if (key.startsWith('/')) throw new InvalidObjectKeyError(key, 'absolute (starts with /)');
  const segments = key.split('/');
  segments.forEach(checkSegment(key));
  if (segments[0] === RESERVED_TOP_LEVEL_SEGMENT) {
    throw new InvalidObjectKeyError(key, `${RESERVED_TOP_LEVEL_SEGMENT}/ is reserved`);
  }
  return key;
}

/**
 * Checks a list prefix: a plain string prefix, so its last segment may be partial or empty (`files/`),
 * but every full segment before it follows the key rules. The empty prefix lists everything.
 */
export function validateListPrefix(prefix: string): string {
  checkCharacters(prefix, 'prefix');
  if (prefix.startsWith('/')) throw new InvalidObjectKeyError(prefix, 'absolute (starts with /)');
  prefix.split('/').slice(0, -1).forEach(checkSegment(prefix));
  return prefix;
}

function checkCharacters(value: string, what: string): void {
  if (typeof value !== 'string') throw new InvalidObjectKeyError(String(value), `${what} must be a string`);
  if (Buffer.byteLength(value, 'utf8') > MAX_OBJECT_KEY_BYTES) {
    throw new InvalidObjectKeyError(value, `longer than ${MAX_OBJECT_KEY_BYTES} bytes`);
  }
  if (FORBIDDEN_CHARACTERS.test(value)) {
    throw new InvalidObjectKeyError(value, 'contains a control character, a backslash or invalid UTF-16');
  }
}

function checkSegment(key: string): (segment: string) => void {
  return (segment) => {
    if (segment === '') throw new InvalidObjectKeyError(key, 'empty path segment');
    if (segment === '.' || segment === '..') throw new InvalidObjectKeyError(key, `"${segment}" path segment`);
  };
}

/**
 * Whether a project may use an object: the platform's own areas belong to their owners
 * (`files/<tenant>/<project>/...` to that project, `models/<tenant>/...` to that tenant); anything
 * else is what an operator put in the store, shared by everyone.
 */
export function keyBelongsTo(key: string, scope: { tenantId: string; projectId: string }): boolean {
  if (key.startsWith('files/')) return key.startsWith(`files/${scope.tenantId}/${scope.projectId}/`);
  if (key.startsWith('models/')) return key.startsWith(`models/${scope.tenantId}/`);
  return true;
}
