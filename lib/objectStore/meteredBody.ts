import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ObjectTooLargeError } from './errors.js';
import type { PutObjectOptions } from './objectStore.js';

/** Counts the bytes passing through and fails with ObjectTooLargeError on the first chunk past the limit. */
export class MeteredBody extends Transform {
  bytes = 0;
  constructor(private readonly maxBytes: number | undefined) {
    super();
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    // The chunk that passes the limit is never pushed, so a consumer cannot finish with an oversized body.
    if (this.maxBytes !== undefined && this.bytes > this.maxBytes) callback(new ObjectTooLargeError(this.maxBytes));
    else callback(null, chunk);
  }
}

/**
 * A put's body as one metered stream that the driver consumes. The source is piped in with the abort signal:
 * on abort, overrun or a source error the metered stream is destroyed with that error (so the driver's read
 * fails at once) and the source is destroyed too, so nothing more is read from it. When the driver stops
 * consuming (its own failure), it destroys the metered stream, which destroys the source the same way.
 */
export function meterBody(body: NodeJS.ReadableStream | AsyncIterable<Uint8Array>, { maxBytes, signal }: PutObjectOptions): MeteredBody {
  if (maxBytes !== undefined && (!Number.isSafeInteger(maxBytes) || maxBytes < 0)) {
    throw new RangeError(`maxBytes must be a non-negative integer, got ${maxBytes}`);
  }
  const metered = new MeteredBody(maxBytes);
  const source = body instanceof Readable ? body : Readable.from(body as AsyncIterable<Uint8Array>, { objectMode: false });
  // The failure is read from `metered.errored` (or the driver's own read); this promise only reports it again.
  pipeline(source, metered, signal ? { signal } : {}).catch(() => {});
  return metered;
}

/**
 * The error a failed put reports: the abort reason when aborted (like fetch), else why the body failed
 * (too large, source error), else the driver's own error.
 */
export function putFailure(metered: MeteredBody, driverError: unknown, signal: AbortSignal | undefined): unknown {
  if (signal?.aborted) return signal.reason;
  return metered.errored ?? driverError;
}
