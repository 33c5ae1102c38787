import { validateObjectKey } from './keys.js';

/**
 * Whether an address names a scheme (`s3:`, `file:`, `https:` ...). Anything with one is read as a URI, so a
 * relative key whose first segment looks like `word:` must be given in the store's URI form instead.
 */
export function hasUriScheme(address: string): boolean {
  return /^[A-Za-z][A-Za-z0-9+.-]*:/.test(address);
}

/** The key if valid, else null (keyFromUri never throws). */
export function keyOrNull(key: string): string | null {
  try {
    return validateObjectKey(key);
  } catch {
    return null;
  }
}
