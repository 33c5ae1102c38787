import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson } from '../lib/http.js';
import { unixSeconds } from '../lib/unixSeconds.js';
import { RestError } from './errors.js';
import type { GatewayClient } from './gatewayClient.js';
import { readJsonBody } from './json.js';
import { listParams, toList, type GraphQLPage } from './lists.js';
import type { RouteContext } from './router.js';

const BATCH_FIELDS = `id endpoint model inputFileId completionWindow status outputFileId errorFileId errors { code message param line }
  requestCounts { total completed failed } metadata createdAt inProgressAt expiresAt finalizingAt completedAt failedAt expiredAt cancellingAt cancelledAt`;

interface GraphQLBatch {
  id: string;
  endpoint: string;
  model: string | null;
  inputFileId: string;
  completionWindow: string;
  status: string;
  outputFileId: string | null;
  errorFileId: string | null;
  errors: { code: string; message: string; param: string | null; line: number | null }[];
  requestCounts: { total: number; completed: number; failed: number };
  metadata: Record<string, string> | null;
  createdAt: string;
  inProgressAt: string | null;
  expiresAt: string;
  finalizingAt: string | null;
  completedAt: string | null;
  failedAt: string | null;
  expiredAt: string | null;
  cancellingAt: string | null;
  cancelledAt: string | null;
}

/** OpenAI API: the batch object. Fields with no value are left out (the spec types them as present strings and integers). */
function toBatch(batch: GraphQLBatch) {
  const optional: Record<string, unknown> = {
    model: batch.model,
    output_file_id: batch.outputFileId,
    error_file_id: batch.errorFileId,
    errors: batch.errors.length > 0 ? { object: 'list', data: batch.errors } : null,
    in_progress_at: unixSeconds(batch.inProgressAt, null),
    finalizing_at: unixSeconds(batch.finalizingAt, null),
    completed_at: unixSeconds(batch.completedAt, null),
    failed_at: unixSeconds(batch.failedAt, null),
    expired_at: unixSeconds(batch.expiredAt, null),
    cancelling_at: unixSeconds(batch.cancellingAt, null),
    cancelled_at: unixSeconds(batch.cancelledAt, null),
  };
  return {
    id: batch.id,
    object: 'batch' as const,
    endpoint: batch.endpoint,
    input_file_id: batch.inputFileId,
    completion_window: batch.completionWindow,
    status: batch.status.toLowerCase(),
    created_at: unixSeconds(batch.createdAt),
    expires_at: unixSeconds(batch.expiresAt),
    request_counts: batch.requestCounts,
    metadata: batch.metadata,
    ...Object.fromEntries(Object.entries(optional).filter(([, value]) => value !== null)),
  };
}

/** OpenAI API: create batch's body → CreateBatchInput (the batches subgraph checks the values). */
function createInput(body: Record<string, unknown>) {
  for (const name of ['input_file_id', 'endpoint', 'completion_window'] as const) {
    if (typeof body[name] !== 'string' || body[name] === '') throw RestError.badRequest(`Missing required parameter: '${name}'`, name);
  }
  return {
    inputFileId: body['input_file_id'] as string,
    endpoint: body['endpoint'] as string,
    completionWindow: body['completion_window'] as string,
    metadata: body['metadata'] ?? null,
  };
}

/**
 * OpenAI's Batch API (`/v1/batches`): create, list, retrieve, cancel. Not LLMariner's container batch
 * jobs, which are `/v1/batch/jobs` (batchJobs.ts).
 */
export function batchRoutes({ gateway }: { gateway: GatewayClient }) {
  const one = async (req: IncomingMessage, ctx: RouteContext, query: string, variables: Record<string, unknown>) => {
    const data = await gateway.request<Record<string, GraphQLBatch | null>>(req, ctx.requestId, query, variables);
    const batch = Object.values(data)[0];
    if (!batch) throw RestError.notFound(`No batch found with id '${String(variables['id'] ?? '')}'`);
    return toBatch(batch);
  };

  async function create(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const input = createInput(await readJsonBody(req));
    sendJson(
      res,
      200,
      await one(req, ctx, `mutation CreateBatch($input: CreateBatchInput!) { createBatch(input: $input) { ${BATCH_FIELDS} } }`, { input }),
      ctx.headers,
    );
  }

  async function list(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    // OpenAI API: newest first, 20 by default; it takes no `order`.
    const { after, limit } = listParams(ctx.url, 'desc');
    const { batches } = await gateway.request<{ batches: GraphQLPage<GraphQLBatch> }>(
      req,
      ctx.requestId,
      `query Batches($after: String, $limit: Int) { batches(after: $after, limit: $limit) { items { ${BATCH_FIELDS} } hasMore } }`,
      { after, limit: ctx.url.searchParams.has('limit') ? limit : 20 },
    );
    sendJson(res, 200, toList(batches.items.map(toBatch), batches.hasMore), ctx.headers);
  }

  const retrieve = async (req: IncomingMessage, res: ServerResponse, ctx: RouteContext) =>
    sendJson(res, 200, await one(req, ctx, `query Batch($id: ID!) { batch(id: $id) { ${BATCH_FIELDS} } }`, { id: ctx.params['id']! }), ctx.headers);

  const cancel = async (req: IncomingMessage, res: ServerResponse, ctx: RouteContext) =>
    sendJson(
      res,
      200,
      await one(req, ctx, `mutation CancelBatch($id: ID!) { cancelBatch(id: $id) { ${BATCH_FIELDS} } }`, { id: ctx.params['id']! }),
      ctx.headers,
    );

  return [
    { method: 'POST', path: '/v1/batches', handler: create },
    { method: 'GET', path: '/v1/batches', handler: list },
    { method: 'GET', path: '/v1/batches/:id', handler: retrieve },
    { method: 'POST', path: '/v1/batches/:id/cancel', handler: cancel },
  ];
}
