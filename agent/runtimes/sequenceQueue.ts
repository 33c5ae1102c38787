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
 * `maxHoldMs` may start beside an interactive generation (still not into the last free sequence, and
 * after interactive waiters), so a steady trickle of interactive requests cannot starve a batch.
 * Generations under way are never pre-empted.
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

  /** One sequence stays free for the next interactive request (a runtime of one sequence has none to keep). */
  private hasRoomForBatch(): boolean {
    return this.free.length >= (this.total > 1 ? 2 : 1);
  }

  /**
   * Whether the first batch waiter may start now: never while an interactive request waits, never into
   * the last sequence (unless there is only one), and not beside an interactive generation unless it
   * was held back for `maxHoldMs`.
   */
  private batchMayStart(first: Waiter<S>): boolean {
    if (this.interactive.length > 0) return false;
    if (!this.hasRoomForBatch()) return false;
    return this.holding.interactive === 0 || this.now() - first.since >= (this.options.maxHoldMs ?? BATCH_MAX_HOLD_MS);
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
    // A batch waiter held back only by an interactive generation is looked at again when its hold runs
    // out; anything else that holds it back changes with a release or a new request, which dispatch again.
    clearTimeout(this.timer);
    this.timer = undefined;
    const first = this.batch[0];
    if (first && this.interactive.length === 0 && this.hasRoomForBatch()) {
      const wait = first.since + (this.options.maxHoldMs ?? BATCH_MAX_HOLD_MS) - this.now();
      if (wait > 0) this.timer = setTimeout(() => this.dispatch(), wait + 1).unref();
    }
  }
}
