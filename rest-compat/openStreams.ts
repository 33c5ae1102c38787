import type { RestError } from './errors.js';

/** Ends one streamed answer with an error; resolves once its last bytes are written (or it is gone). */
export type StreamEnder = (error: RestError) => Promise<void>;

/**
 * The streamed answers (server-sent events) in flight. A stopping server first lets them finish (its
 * drain); the ones still open at the drain's limit are ended here with an OpenAI error event, so the
 * client learns why its stream stopped instead of seeing a cut connection (OpenAI streams end a failure
 * the same way: an `error` object, no `[DONE]`).
 */
export class OpenStreams {
  private readonly enders = new Set<StreamEnder>();

  /** Registers a stream; the returned function forgets it (call it when the stream ends). */
  add(end: StreamEnder): () => void {
    this.enders.add(end);
    return () => this.enders.delete(end);
  }

  get size(): number {
    return this.enders.size;
  }

  /** Ends every open stream with `error`; resolves when they are written out, or after `timeoutMs`. */
  async endAll(error: RestError, timeoutMs = 2_000): Promise<void> {
    const ending = Promise.all([...this.enders].map((end) => end(error).catch(() => undefined)));
    this.enders.clear();
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    await Promise.race([ending, limit]);
    clearTimeout(timer);
  }
}
