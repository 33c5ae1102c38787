import type { RequestPriority } from '../../lib/requestPriority.js';

/** How long a batch request may be held back by interactive traffic before it takes a free sequence anyway. */
export const BATCH_MAX_HOLD_MS = 2_000;

interface Waiter<S> {
  priority: RequestPriority;
  since: number;
  grant(sequence: S): void;
}

/**
 * The runtime's sequences and the requests waiting for one, interactive ahead of batch (lib/requestPriority.ts).
 * An interactive request takes any free sequence, and waits first in line when none is free. A batch
 * request starts only while no interactive request is waiting or generating, and leaves one sequence
 * to interactive requests (with one sequence, it takes it only while no interactive request is there):
 * an interactive request that arrives finds a sequence free and shares the CPU with at most the batch
 * generations already under way, none starting beside it. A batch request held back longer than
 * `maxHoldMs` takes a sequence that is free (interactive waiters still first), so a steady trickle of
 * interactive requests cannot starve a batch. Generations under way are never pre-empted.
 */
export class SequenceQueue<S> {
  private readonly free: S[];
  private readonly interactive: Waiter<S>[] = [];
  private readonly batch: Waiter<S>[] = [];
  private readonly holding: Record<RequestPriority, number> = { interactive: 0, batch: 0 };
  private readonly held = new Map<S, RequestPriority>();
  private readonly total: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    sequences: readonly S[],
    private readonly options: { maxHoldMs?: number; now?: () => number; onDropped?: () => void } = {},
  ) {
    this.free = [...sequences];
    this.total = sequences.length;
  }

  /** Sequences held and requests waiting, by priority (for /metrics and tests). */
  get state() {
    return { holding: { ...this.holding }, waiting: { interactive: this.interactive.length, batch: this.batch.length } };
  }

  /** Waits for a sequence; rejects with the signal's reason when it aborts first (the waiter is dropped). */
  acquire(priority: RequestPriority, signal: AbortSignal): Promise<S> {
    if (signal.aborted) return Promise.reject(signal.reason as Error);
    return new Promise<S>((resolve, reject) => {
      const queue = priority === 'batch' ? this.batch : this.interactive;
      const waiter: Waiter<S> = {
        priority,
        since: this.now(),
        grant: (sequence) => {
          signal.removeEventListener('abort', onAbort);
          resolve(sequence);
        },
      };
      const onAbort = () => {
        queue.splice(queue.indexOf(waiter), 1);
        this.options.onDropped?.();
        reject(signal.reason as Error);
        this.dispatch();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      queue.push(waiter);
      this.dispatch();
    });
  }

  release(sequence: S): void {
    const priority = this.held.get(sequence);
    if (!priority) return;
    this.held.delete(sequence);
    this.holding[priority]--;
    this.free.push(sequence);
    this.dispatch();
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  /** Whether the first batch waiter may start now. */
  private batchMayStart(first: Waiter<S>): boolean {
    if (this.interactive.length > 0) return false;
    const share = this.holding.interactive === 0 && this.holding.batch < Math.max(1, this.total - 1);
    return share || this.now() - first.since >= (this.options.maxHoldMs ?? BATCH_MAX_HOLD_MS);
  }

  private dispatch(): void {
    while (this.free.length > 0) {
      const next = this.interactive[0] ?? (this.batch[0] && this.batchMayStart(this.batch[0]) ? this.batch[0] : undefined);
      if (!next) break;
      (next.priority === 'batch' ? this.batch : this.interactive).shift();
      this.holding[next.priority]++;
      const sequence = this.free.pop()!;
      this.held.set(sequence, next.priority);
      next.grant(sequence);
    }
    // A batch waiter held back is looked at again when its hold runs out (a release wakes it sooner).
    clearTimeout(this.timer);
    this.timer = undefined;
    const first = this.batch[0];
    if (first && this.free.length > 0) {
      const wait = Math.max(0, first.since + (this.options.maxHoldMs ?? BATCH_MAX_HOLD_MS) - this.now());
      this.timer = setTimeout(() => this.dispatch(), wait + 1).unref();
    }
  }
}
