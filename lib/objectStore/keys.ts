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
 * The areas of the platform's store that Mariner writes itself (Security model: organizations are
 * isolated from each other). Every key Mariner chooses starts with one of these:
 * - `files/<tenant>/<project>/<file id>`: uploaded files (subgraphs/files `objectKeyFor`);
 * - `models/<tenant>/<model id>/...`: a model's weights as its loader stored them (subgraphs/models
 *   loading.ts `destinationKey`, `mariner up --demo-model`);
 * - `models/<tenant>/fine-tuned/<job id>/...`: a fine-tuning job's output (subgraphs/jobs `outputPrefix`).
 * (`.tmp/` is the filesystem driver's, and no valid key: see `validateObjectKey`.)
 * What lies there belongs to one project or to the tenant's catalog, so a caller naming such an object
 * by its path could read another organization's file or private model: those objects are reached
 * through their File or Model, whose owners are checked, never by path. Anything else in the store is
 * what an operator put there, shared by everyone.
 */
export const PLATFORM_AREAS = ['files', 'models'] as const;

/**
 * The platform area a key lies in, or null. Takes a key as `ObjectStore.keyFromUri` returns it (a
 * checked key: no `.`, `..` or empty segments, percent-escapes of `file://` URIs decoded), so
 * `./models/...`, `a/../models/...`, `//models/...` or `%6Dodels` cannot name an area another way.
 * The first segment is compared without case: on a case-insensitive filesystem `Models/` is `models/`.
 */
export function platformAreaOf(key: string): (typeof PLATFORM_AREAS)[number] | null {
  const first = key.split('/', 1)[0]!.toLowerCase();
  return (PLATFORM_AREAS as readonly string[]).includes(first) ? (first as (typeof PLATFORM_AREAS)[number]) : null;
}
