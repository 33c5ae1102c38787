import type { Logger } from '../../lib/logging.js';
import type { UsageRecord, UsageStore } from './store.js';

/** How usage records are written: batched, off the request path. */
export interface UsageRecorderSettings {
  /** A batch is written at least this often (ms). */
  flushIntervalMs: number;
  /** ...or as soon as this many records wait. */
  maxBatch: number;
  /** Records kept waiting at most (the database is down): the oldest are dropped past it, and logged. */
  maxPending: number;
  /** Records older than this many days are deleted (LLMariner api-usage-cleaner); 0 keeps them all. */
  retentionDays: number;
}

/** How often old records are purged. */
const PURGE_INTERVAL_MS = 60 * 60 * 1000;

/**
 * Usage records of inference requests (LLMariner api-usage collector, reference §10): `record` only
 * queues (a request never waits on it); a timer writes the queue in one insert. A failed write is
 * retried with the next batch; `stop` writes what is left.
 */
export class UsageRecorder {
  private pending: UsageRecord[] = [];
  private writing: Promise<void> = Promise.resolve();
  private readonly timer: NodeJS.Timeout;
  private readonly purger: NodeJS.Timeout;
  private dropped = 0;

  constructor(
    private readonly store: UsageStore,
    private readonly settings: UsageRecorderSettings,
    private readonly logger: Logger,
    /** Sees each record as it is made (the component's metrics). */
    private readonly observe?: (record: UsageRecord) => void,
  ) {
    this.timer = setInterval(() => void this.flush(), settings.flushIntervalMs);
    this.timer.unref();
    this.purger = setInterval(() => void this.purge(), PURGE_INTERVAL_MS);
    this.purger.unref();
  }

  /** Deletes the records past the retention (every replica may run it: a delete is idempotent). */
  async purge(now = new Date()): Promise<number> {
    if (this.settings.retentionDays === 0) return 0;
    try {
      return await this.store.purgeBefore(new Date(now.getTime() - this.settings.retentionDays * 24 * 60 * 60 * 1000));
    } catch (error) {
      this.logger.warn({ err: (error as Error).message }, 'purging old usage records failed');
      return 0;
    }
  }

  record(record: UsageRecord): void {
    this.observe?.(record);
    this.pending.push(record);
    if (this.pending.length > this.settings.maxPending) {
      this.pending.shift();
      this.dropped++;
    }
    if (this.pending.length >= this.settings.maxBatch) void this.flush();
  }

  /** Writes what is queued now (one batch at a time). */
  flush(): Promise<void> {
    this.writing = this.writing.then(async () => {
      if (this.dropped > 0) {
        this.logger.warn({ dropped: this.dropped }, 'usage records dropped: the database did not take them in time');
        this.dropped = 0;
      }
      const batch = this.pending.splice(0, this.pending.length);
      if (batch.length === 0) return;
      try {
        await this.store.insert(batch);
      } catch (error) {
        this.logger.warn({ err: (error as Error).message, records: batch.length }, 'writing usage records failed; retrying with the next batch');
        this.pending.unshift(...batch);
      }
    });
    return this.writing;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    clearInterval(this.purger);
    await this.flush();
  }
}
