import { ErrorCode, MarinerError } from '../../lib/errors.js';
import type { Logger } from '../../lib/logging.js';
import { PeriodicTask } from '../../lib/periodicTask.js';
import type { JobEvents } from './events.js';
import type { JobDependencies } from './dependencies.js';
import type { JobRow, JobStore, NotebookRow } from './store.js';

/** The error a job gets when the API key that created it was deleted. */
export const CREATOR_KEY_REVOKED = 'creator_key_revoked';

/** Answers already had in one pass (one question per creator key, not per job). */
export type KeyLookups = Map<string, Promise<boolean>>;

/**
 * Whether a job may still act for its creator (issue 14). A job keeps its creator's identity, never
 * their credential; what it does on their behalf — a fine-tuned model registered in their project, a
 * notebook's own API key (its OPENAI_API_KEY), a job sent to a cluster to start — stops when the API
 * key that created it was deleted: revoking a key revokes the work it started. So:
 * - a job about to be sent to a cluster to start (or a notebook to start again) fails instead;
 * - a fine-tuning job's output is not registered: the job fails;
 * - a notebook's own API key is deleted (`sweep`, every `intervalMs`) and the notebook stopped, with
 *   the reason as its error.
 * A job created through OIDC (no key) has no credential to revoke: it acts for its user as before.
 */
export class CreatorCredentials {
  private readonly task: PeriodicTask;

  constructor(
    private readonly store: JobStore,
    private readonly dependencies: JobDependencies,
    private readonly events: JobEvents,
    logger: Logger,
    private readonly options: { intervalMs: number; onChanged(): void },
  ) {
    this.task = new PeriodicTask(
      () => this.sweep(),
      options.intervalMs,
      (error) => logger.warn({ err: error.message }, "checking notebooks' creator keys failed; retrying on the next tick"),
    );
  }

  /** Why the job may no longer act for its creator, or null when it may. Asks the users subgraph (as the creator). */
  async refusal(job: JobRow, lookups: KeyLookups = new Map()): Promise<string | null> {
    const key = job.creator.principal.apiKey;
    if (!key) return null;
    const why = `the API key ${key.id} that created ${job.id} was deleted`;
    if (job.creator_revoked_at) return why;
    let exists = lookups.get(key.id);
    if (!exists) {
      exists = this.dependencies.apiKeyExists({ requestId: `jobs:${job.id}`, identity: job.creator }, key.id);
      lookups.set(key.id, exists);
    }
    return (await exists) ? null : why;
  }

  /**
   * The job stops acting for its creator, for `reason` (its error, and an event): a notebook's own API
   * key is deleted first (as its creator, who made it); then the job fails (`fail`), or a queued or
   * running notebook is stopped.
   */
  async revoke(job: JobRow, reason: string, options: { fail: boolean }): Promise<JobRow | undefined> {
    if (job.kind === 'notebook' && !job.creator_revoked_at) await this.deleteNotebookKey(job);
    const updated = await this.store.creatorRevoked(job.id, { code: CREATOR_KEY_REVOKED, message: reason, param: null }, options);
    if (!updated) return undefined;
    await this.events.record(updated, { level: 'error', type: 'message', message: `${reason[0]!.toUpperCase()}${reason.slice(1)}` });
    await this.events.changed(updated);
    return updated;
  }

  private async deleteNotebookKey(notebook: NotebookRow): Promise<void> {
    try {
      await this.dependencies.deleteApiKey({ requestId: `jobs:${notebook.id}`, identity: notebook.creator }, notebook.secrets.apiKeyId);
    } catch (error) {
      // Deleted already (or with its user): nothing acts with it any more.
      if (error instanceof MarinerError && error.code === ErrorCode.NOT_FOUND) return;
      throw error;
    }
  }

  /** Notebooks whose creator's key was deleted lose their own key and are stopped. */
  async sweep(): Promise<void> {
    const lookups: KeyLookups = new Map();
    for (const notebook of await this.store.notebooksActingForApiKeys()) {
      const reason = await this.refusal(notebook, lookups);
      if (!reason) continue;
      if (await this.revoke(notebook, `${reason}: the notebook's own API key was deleted, and the notebook stopped`, { fail: false })) this.options.onChanged();
    }
  }

  start(): void {
    this.task.start();
  }

  stop(): Promise<void> {
    return this.task.stop();
  }
}
