import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';

/**
 * JSON values sealed with AES-256-GCM, for what a browser keeps but must not read or change: the
 * notebook proxy's session cookie (subgraphs/sessions/sessionCookie.ts) and the console's
 * (gateway/console.ts) hold a credential this way. The key is derived from the platform's secret (the
 * internal token secret) for one purpose, so a value sealed for one purpose never opens for another,
 * and is never a valid internal token. A value is `iv (12) | tag (16) | ciphertext`, base64url: a
 * changed byte fails authentication.
 */
export interface Sealer {
  seal(payload: object): string;
  /** The payload, parsed; null when the value is forged, altered or malformed (the caller checks its fields). */
  open(value: string): unknown;
}

const IV_BYTES = 12;
const TAG_BYTES = 16;

/** `keyLabel` derives the key from `secret`; `aad` is authenticated with every value (both name the purpose and its version). */
export function createSealer(secret: string, keyLabel: string, aad: string): Sealer {
  const key = createHmac('sha256', secret).update(keyLabel).digest();
  const additional = Buffer.from(aad);
  return {
    seal(payload) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv).setAAD(additional);
      const body = Buffer.concat([cipher.update(JSON.stringify(payload), 'utf8'), cipher.final()]);
      return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url');
    },
    open(value) {
      try {
        const bytes = Buffer.from(value, 'base64url');
        if (bytes.length < IV_BYTES + TAG_BYTES + 2) return null;
        const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, IV_BYTES)).setAAD(additional);
        decipher.setAuthTag(bytes.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
        return JSON.parse(Buffer.concat([decipher.update(bytes.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8')) as unknown;
      } catch {
        return null;
      }
    },
  };
}
