/**
 * How urgent an inference request is, from the platform to the runtime that serves it. A batch's
 * requests (subgraphs/batches) are `batch`: the local runtime (agent/runtimes/sequenceQueue.ts) starts
 * one only when no interactive request is waiting or generating, and keeps a sequence free for the
 * interactive ones (issue 17: interactive latency holds while a batch runs). Everything else is
 * `interactive`. The header is set by the inference data plane only (subgraphs/inference/completions.ts,
 * from the data plane call's `priority`), never taken from a client: at worst it lowers the platform's
 * own batch work. Runtimes that do not know it (vLLM, Ollama) ignore it.
 */
export type RequestPriority = 'interactive' | 'batch';

export const PRIORITY_HEADER = 'x-mariner-priority';

/** The priority a header value names; anything but `batch` is interactive. */
export function priorityOf(value: string | string[] | undefined): RequestPriority {
  return value === 'batch' ? 'batch' : 'interactive';
}

/**
 * The interactive requests a process is answering, for batch work to wait on: `during` counts one while
 * it runs; `idle` resolves when none is running, or after `maxWaitMs` (a steady stream of interactive
 * requests slows a batch but does not stop it).
 */
export class InteractiveTraffic {
  private running = 0;
  private waiters: (() => void)[] = [];
  private lastEnded = -Infinity;

  /** Whether an interactive request is running, or one ended within `windowMs`. */
  recent(windowMs: number): boolean {
    return this.running > 0 || Date.now() - this.lastEnded < windowMs;
  }

  async during<T>(work: () => Promise<T>): Promise<T> {
    this.running++;
    try {
      return await work();
    } finally {
      this.lastEnded = Date.now();
      if (--this.running === 0) for (const wake of this.waiters.splice(0)) wake();
    }
  }

  idle(maxWaitMs: number): Promise<void> {
    if (this.running === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== wake);
        resolve();
      }, maxWaitMs);
      const wake = () => {
        clearTimeout(timer);
        resolve();
      };
      this.waiters.push(wake);
    });
  }
}
