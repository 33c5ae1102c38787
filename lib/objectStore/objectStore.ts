/** The object store's public types: what every driver offers (lib/objectStore/README.md). */
import type { Readable } from 'node:stream';

export interface ObjectInfo {
  key: string;
  bytes: number;
}

export interface PutObjectOptions {
  /** Largest accepted body, enforced while streaming: the put fails with ObjectTooLargeError once passed. */
  maxBytes?: number;
  /** Stored as the S3 object's Content-Type; the filesystem driver does not keep it. */
  contentType?: string;
  /** Aborting fails the put with `signal.reason` and leaves nothing behind. */
  signal?: AbortSignal;
}

export interface ObjectStore {
  readonly kind: 'filesystem' | 's3';
  /**
   * Streams `body` to `key`. Atomic: the object becomes visible only when the whole body is written;
   * on any error, abort (options.signal) or size overrun nothing is left behind (no partial object, no temp
   * file/multipart upload). Enforces options.maxBytes WHILE streaming: throws ObjectTooLargeError as soon as
   * the limit is passed (and stops reading the source, which is destroyed). Returns the bytes written.
   * An existing object at `key` is replaced atomically.
   */
  put(key: string, body: NodeJS.ReadableStream | AsyncIterable<Uint8Array>, options?: PutObjectOptions): Promise<{ bytes: number }>;
  /** A stream of the object's bytes; throws ObjectNotFoundError when absent. Destroy it to stop early. */
  get(key: string): Promise<Readable>;
  /** The object's size, or null when absent. */
  head(key: string): Promise<ObjectInfo | null>;
  /** Idempotent: deleting an absent key succeeds. */
  delete(key: string): Promise<void>;
  /** Every object whose key starts with `prefix` (a plain string prefix, as in S3), in key order (UTF-8 bytes). */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** The object's address for users, e.g. `s3://bucket/prefix/key` or `file:///abs/path`. */
  uri(key: string): string;
  /**
   * The key for an address in THIS store (`s3://<our bucket>/<our prefix>/...`, `file://` under our dir,
   * or a relative key), or null if the address is elsewhere or invalid (e.g. `..` segments).
   */
  keyFromUri(uri: string): string | null;
  /**
   * A URL that lets its holder GET (download) or PUT (upload, replacing) the object at `key` without
   * credentials, for `expiresInSeconds` (S3 allows at most 7 days). Only stores reachable over HTTP
   * have it (S3): pods of a job fetch inputs and store outputs with such URLs (LLMariner dispatcher).
   */
  presignedUrl?(key: string, method: 'GET' | 'PUT', expiresInSeconds: number): Promise<string>;
  close(): Promise<void>;
}
