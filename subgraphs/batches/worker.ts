import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type { BatchesConfig } from '../../lib/config.js';
import { ErrorCode, MarinerError } from '../../lib/errors.js';
import { IdPrefix } from '../../lib/ids.js';
import type { Logger } from '../../lib/logging.js';
import type { BatchCreators, BatchFiles } from './clients.js';
import type { BatchEvents } from './events.js';
import type { RequestRunner } from './requestRunner.js';
import type { BatchRow, BatchStore, ClaimedRequest, RequestResult, RequestResultRow } from './store.js';
import { BATCH_ENDPOINTS } from './validation.js';

export interface BatchWorker {
  /** Looks for work now (a batch was created or cancelled). */
  wake(): void;
  /**
   * Stops claiming; the requests running finish and their answers are stored (up to `stopGraceMs`),
   * those still running then are given back at once for whoever runs next.
   */
  stop(): Promise<void>;
}

export interface BatchWorkerOptions {
  store: BatchStore;
  files: BatchFiles;
  creators: BatchCreators;
  runner: RequestRunner;
  events: BatchEvents;
  settings: BatchesConfig;
  logger: Logger;
  /** How long `stop` lets running requests finish. */
  stopGraceMs?: number;
}

/** A request refused as busy (RATE_LIMITED, UNAVAILABLE) is tried this many times, waiting longer each time. */
const MAX_ATTEMPTS = 5;

/** The request id of a batch's line: OpenAI's `batch_req_` id, the same for every attempt (the logs tie attempts together). */
export const requestIdOf = (batchId: string, line: number) => `${IdPrefix.batchRequest}${batchId.slice(IdPrefix.batch.length)}L${line}`;

/** OpenAI's batch request output object, one line of the output or error file. */
function outputLine(batchId: string, row: RequestResultRow, unrun: { code: string; message: string } | null): string {
  const error = row.outcome === null ? unrun : row.error;
  return JSON.stringify({ id: requestIdOf(batchId, row.line), custom_id: row.custom_id, response: row.response ?? null, error: error ?? null });
}

/**
 * Runs batches in the background, on every replica of the component. Requests are claimed from
 * Postgres under leases (store.ts `claim`: SKIP LOCKED, per-batch and per-tenant caps across
 * replicas), run as the batch's creator, and their answers stored once (`record`: the first answer
 * wins, the counts move with it). A replica that stops lets its running requests finish and stores
 * their answers; one that dies leaves leases that lapse after `leaseSeconds`, and those requests run
 * again elsewhere (the only case where a request reaches a runtime twice; its answer is still kept once).
 * A batch whose every request has answered (or that expired, or was cancelled) is finalized by one
 * replica: its output and error files are written as Files of the creator's project, then it ends.
 */
export function startBatchWorker(options: BatchWorkerOptions): BatchWorker {
  const { store, settings, logger } = options;
  const owner = `batches-${randomUUID()}`;
  const running = new Set<Promise<void>>();
  const stopping = new AbortController();
  // One listener per running request (concurrencyPerReplica at most), each removed when it ends.
  setMaxListeners(0, stopping.signal);
  let stopped = false;
  /** The passes under way (one loop of them at a time), while there is one. */
  let passes: Promise<void> | null = null;
  let again = false;
  let finalizing = false;
  const batches = new Map<string, BatchRow>();

  const track = (work: Promise<void>) => {
    running.add(work);
    void work.finally(() => {
      running.delete(work);
      wake();
    });
  };

  async function batchOf(id: string): Promise<BatchRow | undefined> {
    let row = batches.get(id);
    if (!row) {
      row = await store.batchById(id);
      if (row) batches.set(id, row);
    }
    return row;
  }

  /**
   * Why the batch may no longer act for its creator, or null: the API key that created it was deleted
   * (revoking a key revokes the work it started, as for jobs). Asked once per claim of its requests, so
   * a request claimed after the deletion never runs; a batch made through OIDC has no key to revoke.
   */
  async function creatorRefusal(batch: BatchRow): Promise<string | null> {
    const key = batch.creator.principal.apiKey;
    if (!key) return null;
    const exists = await options.creators.apiKeyExists({ requestId: `batches:${batch.id}`, identity: batch.creator }, key.id);
    return exists ? null : `The API key ${key.id} that created ${batch.id} was deleted: the batch's requests no longer run`;
  }

  async function runRequest(request: ClaimedRequest, refusal: Promise<string | null>): Promise<void> {
    const batch = await batchOf(request.batch_id);
    if (!batch) return;
    const requestId = requestIdOf(batch.id, request.line);
    let result: RequestResult;
    if (await refusal) {
      result = { outcome: 'failed', response: null, error: { code: 'creator_key_revoked', message: (await refusal)! } };
    } else {
      // Its own signal, so what the data plane hangs on it goes with the request.
      const leaving = new AbortController();
      const stop = () => leaving.abort();
      stopping.signal.addEventListener('abort', stop, { once: true });
      const answer = await options.runner
        .run(batch.creator, BATCH_ENDPOINTS[batch.endpoint]!, request.body, requestId, leaving.signal)
        .finally(() => stopping.signal.removeEventListener('abort', stop));
      // Stopped mid-request: give it back now rather than when its lease lapses.
      if (stopping.signal.aborted) return store.release(batch.id, request.line, owner, 0);
      if ((answer.code === ErrorCode.RATE_LIMITED || answer.code === ErrorCode.UNAVAILABLE) && request.attempts < MAX_ATTEMPTS) {
        return store.release(batch.id, request.line, owner, Math.min(60, 2 ** request.attempts));
      }
      result = {
        outcome: answer.statusCode === 200 ? 'completed' : 'failed',
        response: { status_code: answer.statusCode, request_id: requestId, body: answer.body },
        error: null,
      };
    }
    if (await store.record(batch.id, request.line, result)) options.events.progressed(batch.id);
  }

  /** All lines of the batch with this outcome (or never run, for the error file), as output lines. */
  async function* linesOf(batch: BatchRow, kind: 'output' | 'error', unrun: { code: string; message: string } | null): AsyncIterable<string> {
    let after = 0;
    for (;;) {
      const page = await store.results(batch.id, after, 500);
      for (const row of page) {
        const wanted = kind === 'output' ? row.outcome === 'completed' : row.outcome === 'failed' || (row.outcome === null && unrun !== null);
        if (wanted) yield outputLine(batch.id, row, unrun);
      }
      if (page.length < 500) return;
      after = page.at(-1)!.line;
    }
  }

  async function finalize(batch: BatchRow): Promise<void> {
    const renew = setInterval(
      () => void store.renewFinalization(batch.id, owner, settings.leaseSeconds).catch(() => undefined),
      Math.max(500, (settings.leaseSeconds * 1000) / 3),
    );
    const end = batch.ends_as ?? 'completed';
    const unrun =
      end === 'expired'
        ? { code: 'batch_expired', message: 'This request was not run: the batch expired before it was reached' }
        : end === 'cancelled'
          ? { code: 'batch_cancelled', message: 'This request was not run: the batch was cancelled' }
          : null;
    const caller = { requestId: `batches:${batch.id}`, identity: batch.creator };
    try {
      if (!batch.output_file_id && batch.completed > 0) {
        await store.setFile(batch.id, 'output_file_id', await options.files.write(caller, `${batch.id}_output.jsonl`, linesOf(batch, 'output', unrun)));
      }
      if (!batch.error_file_id && (batch.failed > 0 || (unrun && batch.completed + batch.failed < batch.total))) {
        await store.setFile(batch.id, 'error_file_id', await options.files.write(caller, `${batch.id}_error.jsonl`, linesOf(batch, 'error', unrun)));
      }
      await store.end(batch.id, owner, end);
      options.events.changed(batch.id);
    } catch (error) {
      if (error instanceof MarinerError && error.code !== ErrorCode.INTERNAL && error.code !== ErrorCode.UNAVAILABLE) {
        // The creator's project refuses the files (deleted, or no room): the batch cannot end well.
        await store.end(batch.id, owner, 'failed', [
          { code: 'output_file_failed', message: `Its output files could not be written: ${error.message}`, param: null, line: null },
        ]);
        options.events.changed(batch.id);
      } else {
        // Left to its lapsing lease: finalized again shortly, here or elsewhere.
        logger.warn({ err: (error as Error).message, batchId: batch.id }, 'writing a batch’s files failed; retrying');
      }
    } finally {
      clearInterval(renew);
      batches.delete(batch.id);
    }
  }

  async function pass(): Promise<void> {
    for (const id of [...(await store.expireDue()), ...(await store.finishedRunning())]) options.events.changed(id);
    if (!finalizing) {
      const batch = await store.claimFinalization(owner, settings.leaseSeconds);
      if (batch) {
        finalizing = true;
        track(finalize(batch).finally(() => (finalizing = false)));
      }
    }
    for (const tenantId of await store.runnableTenants()) {
      const capacity = settings.concurrencyPerReplica - running.size;
      if (capacity <= 0 || stopped) return;
      const claimed = await store.claim(tenantId, owner, {
        perBatch: settings.concurrencyPerBatch,
        perTenant: settings.concurrencyPerTenant,
        capacity,
        leaseSeconds: settings.leaseSeconds,
      });
      const refusals = new Map<string, Promise<string | null>>();
      for (const id of new Set(claimed.map((r) => r.batch_id))) options.events.progressed(id);
      for (const request of claimed) {
        let refusal = refusals.get(request.batch_id);
        if (!refusal) {
          refusal = batchOf(request.batch_id).then((batch) => (batch ? creatorRefusal(batch) : null));
          refusals.set(request.batch_id, refusal);
        }
        track(
          runRequest(request, refusal).catch(async (error: unknown) => {
            // Nothing was stored for its line: it is given back to run again (its lease would be renewed
            // while this replica runs others). A line is idempotent (requestRunner.ts), so what its run
            // stored before failing (a response) is found, not stored twice.
            logger.warn({ err: (error as Error).message, batchId: request.batch_id, line: request.line }, 'a batch request failed to run; it will run again');
            await store.release(request.batch_id, request.line, owner, Math.min(60, 2 ** request.attempts)).catch(() => undefined);
          }),
        );
      }
    }
  }

  function wake(): void {
    if (stopped) return;
    if (passes) {
      again = true;
      return;
    }
    passes = (async () => {
      try {
        do {
          again = false;
          await pass();
        } while (again && !stopped);
      } catch (error) {
        logger.warn({ err: (error as Error).message }, 'the batch worker failed a pass; trying again shortly');
      } finally {
        passes = null;
      }
    })();
  }

  const poll = setInterval(wake, settings.pollIntervalMs);
  const renew = setInterval(
    () => {
      if (running.size > 0) void store.renew(owner, settings.leaseSeconds).catch(() => undefined);
    },
    Math.max(500, (settings.leaseSeconds * 1000) / 3),
  );
  wake();

  return {
    wake,
    async stop() {
      stopped = true;
      clearInterval(poll);
      const grace = new Promise<void>((resolve) => setTimeout(resolve, options.stopGraceMs ?? 10_000).unref());
      await Promise.race([Promise.allSettled([...running]), grace]);
      stopping.abort();
      while (running.size > 0 || passes) await Promise.allSettled([...running, ...(passes ? [passes] : [])]);
      clearInterval(renew);
      options.runner.close();
    },
  };
}
