import type { Logger } from '../../lib/logging.js';
import type { PubSub } from '../../lib/pubsub.js';

/** The channel of batch changes (lib/pubsub.ts): the payload is the batch's id. */
export const BATCH_UPDATES = 'batch_updates';

/** How often a running batch's progress is announced at most (each answer moves its counts). */
const PROGRESS_INTERVAL_MS = 250;

/**
 * Announces that a batch changed, for `batchUpdated` subscribers on every replica: a change of status
 * at once, progress (its counts) at most every PROGRESS_INTERVAL_MS per batch, so a 1,000-line batch is
 * not 1,000 NOTIFYs. A failed announcement is logged: the next one carries the latest state.
 */
export class BatchEvents {
  private readonly due = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly pubsub: PubSub,
    private readonly logger: Logger,
  ) {}

  changed(batchId: string): void {
    clearTimeout(this.due.get(batchId));
    this.due.delete(batchId);
    this.pubsub
      .publish(BATCH_UPDATES, batchId)
      .catch((error: unknown) => this.logger.warn({ err: (error as Error).message, batchId }, 'announcing a batch change failed'));
  }

  progressed(batchId: string): void {
    if (this.due.has(batchId)) return;
    this.due.set(
      batchId,
      setTimeout(() => this.changed(batchId), PROGRESS_INTERVAL_MS),
    );
  }

  stop(): void {
    for (const timer of this.due.values()) clearTimeout(timer);
    this.due.clear();
  }
}
