import { badInput, conflict, notFound } from '../../lib/errors.js';
import { assertId, isId, newId } from '../../lib/ids.js';
import { projectScopeOf } from '../../lib/identity.js';
import { latestOnChange } from '../../lib/latestOnChange.js';
import { JSONScalar } from '../../schema/scalars.js';
import type { BatchesContext } from './context.js';
import type { BatchStatus, Resolvers } from './generated/resolvers.js';
import { BATCH_UPDATES } from './events.js';
import type { BatchRow, BatchStatusValue } from './store.js';
import { readBatchRequests, validCompletionWindow, validEndpoint, validMetadata } from './validation.js';

const iso = (d: Date | null) => (d ? d.toISOString() : null);
const scopeOf = (ctx: BatchesContext) => projectScopeOf(ctx.identity);
const ENDED: BatchStatusValue[] = ['completed', 'failed', 'expired', 'cancelled'];

/** The caller's batch as it is now, then after each announced change, until it ends (a state feed). */
async function batchChanges(ctx: BatchesContext, id: string): Promise<AsyncGenerator<BatchRow>> {
  const scope = scopeOf(ctx);
  if (!isId('batch', id) || !(await ctx.store.batch(scope, id))) throw notFound('batch', id);
  return (async function* () {
    const changes = latestOnChange(
      (changed) => ctx.pubsub.subscribe(BATCH_UPDATES, (payload) => payload === id && changed()),
      () => ctx.store.batch(scope, id),
    );
    for await (const batch of changes) {
      if (!batch) return;
      yield batch;
      if (ENDED.includes(batch.status)) return;
    }
  })();
}

export const resolvers: Resolvers = {
  JSON: JSONScalar,
  Query: {
    batches: (_p, { after, limit }, ctx) => ctx.store.list(scopeOf(ctx), { after, limit }),
    batch: async (_p, { id }, ctx) => (isId('batch', id) ? ((await ctx.store.batch(scopeOf(ctx), id)) ?? null) : null),
  },
  Mutation: {
    async createBatch(_p, { input }, ctx) {
      const scope = scopeOf(ctx);
      validEndpoint(input.endpoint);
      const completionWindow = validCompletionWindow(input.completionWindow);
      const metadata = validMetadata(input.metadata);
      const fileId = assertId('file', input.inputFileId, 'input_file_id');
      // As the caller: the files subgraph lets them reach their own project's files only.
      const file = await ctx.files.file(ctx, fileId);
      if (!file) throw notFound('file', fileId);
      if (file.purpose !== 'batch')
        throw badInput(`input_file_id: ${fileId} was uploaded for ${file.purpose}; a batch reads a file of purpose batch`, 'input_file_id');
      const { requests, model } = await readBatchRequests(await ctx.objectStore.get(file.objectKey), input.endpoint, ctx.settings.maxRequests);
      const row = await ctx.store.insert(
        {
          id: newId('batch'),
          tenant_id: scope.tenantId,
          organization_id: scope.organizationId,
          project_id: scope.projectId,
          endpoint: input.endpoint,
          model,
          input_file_id: fileId,
          completion_window: completionWindow,
          creator: ctx.identity!,
          metadata,
          total: requests.length,
          expires_at: new Date(Date.now() + ctx.settings.completionWindowSeconds * 1000),
        },
        requests,
      );
      ctx.batchWorker.wake();
      return row;
    },
    async cancelBatch(_p, { id }, ctx) {
      const scope = scopeOf(ctx);
      const cancelled = isId('batch', id) ? await ctx.store.cancel(scope, id) : undefined;
      if (cancelled) {
        ctx.events.changed(cancelled.id);
        ctx.batchWorker.wake();
        return cancelled;
      }
      const row = isId('batch', id) ? await ctx.store.batch(scope, id) : undefined;
      if (!row) throw notFound('batch', id);
      if (row.status === 'cancelling' || row.status === 'cancelled') return row;
      throw conflict(`Batch ${id} is ${row.status}: only a validating or in_progress batch can be cancelled`);
    },
  },
  Subscription: {
    batchUpdated: {
      subscribe: (_p, { id }, ctx) => batchChanges(ctx, id),
      resolve: (batch: BatchRow) => batch,
    },
  },
  Batch: {
    __resolveReference: async (ref: { id: string }, ctx: BatchesContext) => (await ctx.store.batch(scopeOf(ctx), ref.id)) ?? null,
    status: (b) => b.status.toUpperCase() as BatchStatus,
    model: (b) => b.model,
    inputFileId: (b) => b.input_file_id,
    completionWindow: (b) => b.completion_window,
    outputFileId: (b) => b.output_file_id,
    errorFileId: (b) => b.error_file_id,
    errors: (b) => b.errors,
    requestCounts: (b: BatchRow) => ({ total: b.total, completed: b.completed, failed: b.failed }),
    metadata: (b) => b.metadata,
    projectId: (b) => b.project_id,
    createdAt: (b) => b.created_at.toISOString(),
    expiresAt: (b) => b.expires_at.toISOString(),
    inProgressAt: (b) => iso(b.in_progress_at),
    finalizingAt: (b) => iso(b.finalizing_at),
    completedAt: (b) => iso(b.completed_at),
    failedAt: (b) => iso(b.failed_at),
    expiredAt: (b) => iso(b.expired_at),
    cancellingAt: (b) => iso(b.cancelling_at),
    cancelledAt: (b) => iso(b.cancelled_at),
  },
};
