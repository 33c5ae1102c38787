import { toCount, type Knex } from '../../lib/db.js';
import type { Identity, ProjectScope } from '../../lib/identity.js';
import { paginate, type Page, type PageArgs } from '../../lib/pagination.js';

export const SCHEMA = 'batches';

/** OpenAI batch statuses, as stored (lower case, as OpenAI writes them). */
export type BatchStatusValue = 'validating' | 'failed' | 'in_progress' | 'finalizing' | 'completed' | 'expired' | 'cancelling' | 'cancelled';
/** Where finalization ends. */
export type BatchEnd = 'completed' | 'expired' | 'cancelled' | 'failed';

/** OpenAI BatchError. */
export interface BatchErrorItem {
  code: string;
  message: string;
  param: string | null;
  line: number | null;
}

export interface BatchRow {
  id: string;
  tenant_id: string;
  organization_id: string;
  project_id: string;
  endpoint: string;
  model: string | null;
  input_file_id: string;
  completion_window: string;
  status: BatchStatusValue;
  creator: Identity;
  metadata: Record<string, string> | null;
  total: number;
  completed: number;
  failed: number;
  errors: BatchErrorItem[];
  output_file_id: string | null;
  error_file_id: string | null;
  ends_as: BatchEnd | null;
  finalize_owner: string | null;
  finalize_until: Date | null;
  created_at: Date;
  expires_at: Date;
  in_progress_at: Date | null;
  finalizing_at: Date | null;
  completed_at: Date | null;
  failed_at: Date | null;
  expired_at: Date | null;
  cancelling_at: Date | null;
  cancelled_at: Date | null;
}

/** One line of the input file, as validated. */
export interface BatchRequestInput {
  line: number;
  customId: string;
  body: Record<string, unknown>;
}

/** A request a replica has claimed to run. */
export interface ClaimedRequest {
  batch_id: string;
  line: number;
  custom_id: string;
  body: Record<string, unknown>;
  attempts: number;
}

/** The answer of a request: an HTTP answer (OpenAI's `response`), or an error that is not one. */
export interface RequestResult {
  outcome: 'completed' | 'failed';
  response: { status_code: number; request_id: string; body: unknown } | null;
  error: { code: string; message: string } | null;
}

/** A request's row as the output files are written from it. */
export interface RequestResultRow {
  line: number;
  custom_id: string;
  outcome: 'completed' | 'failed' | null;
  response: RequestResult['response'];
  error: RequestResult['error'];
}

/** The statuses in which a batch's requests may start. */
const RUNNABLE: BatchStatusValue[] = ['validating', 'in_progress'];

const leaseFor = (knex: Knex, seconds: number) => knex.raw('now() + make_interval(secs => ?)', [seconds]);

/** All SQL of the batches subgraph. */
export class BatchStore {
  constructor(private readonly knex: Knex) {}

  private t(table: string, trx: Knex | Knex.Transaction = this.knex): Knex.QueryBuilder {
    return trx.withSchema(SCHEMA).table(table);
  }

  /** A new batch with all its requests, in one transaction: it exists whole or not at all. */
  async insert(
    row: Pick<
      BatchRow,
      | 'id'
      | 'tenant_id'
      | 'organization_id'
      | 'project_id'
      | 'endpoint'
      | 'model'
      | 'input_file_id'
      | 'completion_window'
      | 'creator'
      | 'metadata'
      | 'total'
      | 'expires_at'
    >,
    requests: readonly BatchRequestInput[],
  ): Promise<BatchRow> {
    return this.knex.transaction(async (trx) => {
      const [inserted] = (await this.t('batches', trx)
        .insert({
          ...row,
          status: 'validating',
          creator: JSON.stringify(row.creator),
          metadata: row.metadata === null ? null : JSON.stringify(row.metadata),
          errors: JSON.stringify([]),
        })
        .returning('*')) as BatchRow[];
      for (let i = 0; i < requests.length; i += 1000) {
        await this.t('batch_requests', trx).insert(
          requests.slice(i, i + 1000).map((r) => ({ batch_id: row.id, line: r.line, custom_id: r.customId, body: JSON.stringify(r.body) })),
        );
      }
      return inserted!;
    });
  }

  async batch(scope: ProjectScope, id: string): Promise<BatchRow | undefined> {
    return (await this.t('batches').where({ id, tenant_id: scope.tenantId, project_id: scope.projectId }).first()) as BatchRow | undefined;
  }

  async batchById(id: string): Promise<BatchRow | undefined> {
    return (await this.t('batches').where({ id }).first()) as BatchRow | undefined;
  }

  /** The project's batches, newest first (OpenAI API: list batches). */
  list(scope: ProjectScope, args: PageArgs): Promise<Page<BatchRow>> {
    return paginate<BatchRow>(
      () => this.t('batches').where({ 'batches.tenant_id': scope.tenantId, 'batches.project_id': scope.projectId }).select('batches.*'),
      'batches',
      { ...args, order: 'desc' },
    );
  }

  /** Stops a runnable batch's requests from starting; undefined when it is not runnable (the row is then read again). */
  async cancel(scope: ProjectScope, id: string): Promise<BatchRow | undefined> {
    const [row] = (await this.t('batches')
      .where({ id, tenant_id: scope.tenantId, project_id: scope.projectId })
      .whereIn('status', RUNNABLE)
      .update({ status: 'cancelling', cancelling_at: this.knex.fn.now(), ends_as: 'cancelled' })
      .returning('*')) as BatchRow[];
    return row;
  }

  // The worker

  /** Tenants with batches whose requests may start. */
  async runnableTenants(): Promise<string[]> {
    const rows = (await this.t('batches').whereIn('status', RUNNABLE).distinct('tenant_id')) as { tenant_id: string }[];
    return rows.map((r) => r.tenant_id);
  }

  /**
   * Claims up to `capacity` requests of one tenant's runnable batches, oldest batch first, within the
   * caps: `perBatch` requests of one batch and `perTenant` of the tenant's running at once (leases held
   * by any replica). The tenant's runnable batches are locked for the claim, so replicas claiming for one
   * tenant take turns and the caps hold across them; SKIP LOCKED on the requests keeps two replicas
   * from taking one request. A batch with a request claimed is in_progress.
   */
  async claim(
    tenantId: string,
    owner: string,
    caps: { perBatch: number; perTenant: number; capacity: number; leaseSeconds: number },
  ): Promise<ClaimedRequest[]> {
    return this.knex.transaction(async (trx) => {
      const batches = (await this.t('batches', trx)
        .where({ tenant_id: tenantId })
        .whereIn('status', RUNNABLE)
        .orderBy([{ column: 'created_at' }, { column: 'id' }])
        .forUpdate()
        .select('id', 'status')) as { id: string; status: BatchStatusValue }[];
      if (batches.length === 0) return [];
      const running = (await trx.raw(
        `select r.batch_id, count(*) as n from ??.batch_requests r join ??.batches b on b.id = r.batch_id
         where b.tenant_id = ? and r.outcome is null and r.lease_owner is not null and r.lease_until > now()
         group by r.batch_id`,
        [SCHEMA, SCHEMA, tenantId],
      )) as { rows: { batch_id: string; n: unknown }[] };
      const runningOf = new Map(running.rows.map((r) => [r.batch_id, toCount(r.n)]));
      let tenantLeft = caps.perTenant - [...runningOf.values()].reduce((a, b) => a + b, 0);
      let capacityLeft = caps.capacity;
      const claimed: ClaimedRequest[] = [];
      for (const batch of batches) {
        const n = Math.min(caps.perBatch - (runningOf.get(batch.id) ?? 0), tenantLeft, capacityLeft);
        if (n <= 0) continue;
        const result = (await trx.raw(
          `update ??.batch_requests r set lease_owner = ?, lease_until = now() + make_interval(secs => ?), attempts = r.attempts + 1
           where r.batch_id = ? and r.line in (
             select c.line from ??.batch_requests c
             where c.batch_id = ? and c.outcome is null and (c.lease_until is null or c.lease_until < now())
             order by c.line limit ? for update skip locked)
           returning r.batch_id, r.line, r.custom_id, r.body, r.attempts`,
          [SCHEMA, owner, caps.leaseSeconds, batch.id, SCHEMA, batch.id, n],
        )) as { rows: ClaimedRequest[] };
        if (result.rows.length > 0 && batch.status === 'validating') {
          await this.t('batches', trx).where({ id: batch.id, status: 'validating' }).update({ status: 'in_progress', in_progress_at: trx.fn.now() });
        }
        claimed.push(...result.rows);
        tenantLeft -= result.rows.length;
        capacityLeft -= result.rows.length;
        if (tenantLeft <= 0 || capacityLeft <= 0) break;
      }
      return claimed.sort((a, b) => a.line - b.line);
    });
  }

  /** Extends this replica's leases on the requests it runs. */
  async renew(owner: string, leaseSeconds: number): Promise<void> {
    await this.t('batch_requests')
      .where({ lease_owner: owner })
      .whereNull('outcome')
      .update({ lease_until: leaseFor(this.knex, leaseSeconds) });
  }

  /**
   * Stores a request's answer once: the first answer stored wins (another replica that ran it after a
   * lapsed lease stores nothing), and the batch's counts move in the same transaction, so they count
   * each request once. False when the request had an answer already.
   */
  async record(batchId: string, line: number, result: RequestResult): Promise<boolean> {
    return this.knex.transaction(async (trx) => {
      const updated = await this.t('batch_requests', trx)
        .where({ batch_id: batchId, line })
        .whereNull('outcome')
        .update({
          outcome: result.outcome,
          response: result.response === null ? null : JSON.stringify(result.response),
          error: result.error === null ? null : JSON.stringify(result.error),
          lease_owner: null,
          lease_until: null,
        });
      if (toCount(updated) === 0) return false;
      await this.t('batches', trx).where({ id: batchId }).increment(result.outcome, 1);
      return true;
    });
  }

  /** Gives a request back to run again after `delaySeconds` (the model was busy or rate limited). */
  async release(batchId: string, line: number, owner: string, delaySeconds: number): Promise<void> {
    await this.t('batch_requests')
      .where({ batch_id: batchId, line, lease_owner: owner })
      .whereNull('outcome')
      .update({ lease_owner: null, lease_until: leaseFor(this.knex, delaySeconds) });
  }

  /** Runnable batches past their completion window start finalizing, to end as expired. */
  async expireDue(): Promise<string[]> {
    const rows = (await this.t('batches')
      .whereIn('status', RUNNABLE)
      .where('expires_at', '<', this.knex.fn.now())
      .update({ status: 'finalizing', finalizing_at: this.knex.fn.now(), ends_as: 'expired' })
      .returning('id')) as { id: string }[];
    return rows.map((r) => r.id);
  }

  /** In-progress batches whose every request has its answer start finalizing, to end as completed. */
  async finishedRunning(): Promise<string[]> {
    const result = (await this.knex.raw(
      `update ??.batches b set status = 'finalizing', finalizing_at = now(), ends_as = 'completed'
       where b.status = 'in_progress' and not exists (select 1 from ??.batch_requests r where r.batch_id = b.id and r.outcome is null)
       returning b.id`,
      [SCHEMA, SCHEMA],
    )) as { rows: { id: string }[] };
    return result.rows.map((r) => r.id);
  }

  /**
   * Takes one batch to finalize (write its files): finalizing or cancelling, with no request of it still
   * running under a live lease, and nobody finalizing it (or its finalizer's lease lapsed).
   */
  async claimFinalization(owner: string, leaseSeconds: number): Promise<BatchRow | undefined> {
    const result = (await this.knex.raw(
      `update ??.batches b set finalize_owner = ?, finalize_until = now() + make_interval(secs => ?)
       where b.id = (
         select c.id from ??.batches c
         where c.status in ('finalizing', 'cancelling') and (c.finalize_until is null or c.finalize_until < now())
           and not exists (select 1 from ??.batch_requests r
                           where r.batch_id = c.id and r.outcome is null and r.lease_owner is not null and r.lease_until > now())
         order by c.created_at limit 1 for update skip locked)
       returning b.*`,
      [SCHEMA, owner, leaseSeconds, SCHEMA, SCHEMA],
    )) as { rows: BatchRow[] };
    return result.rows[0];
  }

  async renewFinalization(batchId: string, owner: string, leaseSeconds: number): Promise<void> {
    await this.t('batches')
      .where({ id: batchId, finalize_owner: owner })
      .update({ finalize_until: leaseFor(this.knex, leaseSeconds) });
  }

  /** The requests of a batch in line order, a page at a time (after `afterLine`). */
  async results(batchId: string, afterLine: number, limit: number): Promise<RequestResultRow[]> {
    return (await this.t('batch_requests')
      .where({ batch_id: batchId })
      .where('line', '>', afterLine)
      .orderBy('line')
      .limit(limit)
      .select('line', 'custom_id', 'outcome', 'response', 'error')) as RequestResultRow[];
  }

  /** A file of the batch, written: kept at once, so a finalizer taking over does not write it again. */
  async setFile(batchId: string, kind: 'output_file_id' | 'error_file_id', fileId: string): Promise<void> {
    await this.t('batches')
      .where({ id: batchId })
      .update({ [kind]: fileId });
  }

  /** Ends a batch this replica finalizes, in its `ends_as` status (or failed, with why). */
  async end(batchId: string, owner: string, end: BatchEnd, errors?: BatchErrorItem[]): Promise<BatchRow | undefined> {
    const [row] = (await this.t('batches')
      .where({ id: batchId, finalize_owner: owner })
      .whereIn('status', ['finalizing', 'cancelling'])
      .update({
        status: end,
        [`${end}_at`]: this.knex.fn.now(),
        finalize_owner: null,
        finalize_until: null,
        ...(errors ? { errors: JSON.stringify(errors) } : {}),
      })
      .returning('*')) as BatchRow[];
    return row;
  }
}
