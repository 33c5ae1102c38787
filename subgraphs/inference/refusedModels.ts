import { failedPrecondition, type MarinerError } from '../../lib/errors.js';
import type { AgentTunnels } from '../../lib/agentContract.js';
import { projectScopeOf, type ProjectScope } from '../../lib/identity.js';
import type { InferenceContext } from './context.js';
import type { ReadyRuntimes } from './readyRuntimes.js';
import type { RoutedResponse } from './router.js';
import type { RuntimeAccess } from './runtimeAccess.js';
import type { RuntimeStore } from './store.js';

/**
 * Models no cluster can run (issue 24: "a model that cannot run hangs the caller"). An agent whose
 * executor cannot run a model at all (the local executor and a model without GGUF weights) reports the
 * reason as the runtime's `failure` (agent/executor.ts). When every connected cluster the caller's
 * organization may use reports one for the model, and none has a ready replica, waiting for a runtime
 * cannot end well: the request is refused at once with the agents' reason (FAILED_PRECONDITION, a 400
 * in OpenAI's shape, which the SDKs do not retry). A cluster that has not reported the model yet, or
 * reports it starting, keeps the request waiting as before.
 */
export class RefusedModels {
  constructor(
    private readonly ready: Pick<ReadyRuntimes, 'ready' | 'onAnnounced'>,
    private readonly store: Pick<RuntimeStore, 'forModels'>,
    private readonly access: Pick<RuntimeAccess, 'usableClusters'>,
    private readonly tunnels: Pick<AgentTunnels, 'connectedClusters'>,
  ) {}

  /** Whether a ready runtime of the model is in memory (the hot path: no refusal to look for). */
  async hasReady(scope: ProjectScope, modelId: string): Promise<boolean> {
    return (await this.ready.ready(scope.tenantId, modelId)).length > 0;
  }

  /** The error refusing the model's requests when every usable, connected cluster refuses it; null otherwise. */
  async refusal(scope: ProjectScope, modelId: string): Promise<MarinerError | null> {
    const connected = this.tunnels.connectedClusters(scope.tenantId);
    if (connected.length === 0) return null;
    const usable = await this.access.usableClusters(scope, connected);
    const clusters = connected.filter((id) => usable.has(id));
    if (clusters.length === 0) return null;
    const rows = new Map((await this.store.forModels(scope.tenantId, [modelId])).map((row) => [row.cluster_id, row]));
    const reasons = new Map<string, string>();
    for (const clusterId of clusters) {
      const row = rows.get(clusterId);
      if (!row?.failure || row.ready_replicas > 0) return null;
      reasons.set(clusterId, row.failure);
    }
    const distinct = [...new Set(reasons.values())];
    const why = distinct.length === 1 ? distinct[0]! : [...reasons].map(([clusterId, reason]) => `cluster ${clusterId}: ${reason}`).join('; ');
    return failedPrecondition(`Model ${modelId} cannot run on any cluster serving your organization: ${why}`);
  }

  /** Calls `changed` at each runtime report of the tenant from now on; returns the stop. */
  watch(scope: ProjectScope, changed: () => void): () => void {
    return this.ready.onAnnounced(scope.tenantId, changed);
  }
}

/**
 * Forwards a request to a runtime of `modelId` (the router), unless no cluster can run the model (see
 * RefusedModels): then it is refused at once, or as soon as the last usable cluster reports so while
 * the request waits. `signal`: the caller left.
 */
export async function forwardToModel(
  ctx: InferenceContext,
  modelId: string,
  path: string,
  body: unknown,
  signal?: AbortSignal,
  headers?: Record<string, string>,
): Promise<RoutedResponse> {
  const scope = projectScopeOf(ctx.identity);
  const { refused } = ctx;
  if (await refused.hasReady(scope, modelId)) return ctx.router.forward(scope, modelId, path, body, signal, ctx.requestId, headers);
  const stopWaiting = new AbortController();
  let refusal: MarinerError | null = null;
  let looking: Promise<void> = Promise.resolve();
  const look = () => {
    looking = looking
      .then(async () => {
        refusal ??= await refused.refusal(scope, modelId);
        if (refusal) stopWaiting.abort();
      })
      .catch((error: Error) => ctx.logger.debug({ err: error.message, modelId }, 'runtime refusals could not be read; the request waits'));
    return looking;
  };
  const stop = refused.watch(scope, () => void look());
  try {
    await look();
    if (refusal) throw refusal;
    return await ctx.router.forward(
      scope,
      modelId,
      path,
      body,
      signal ? AbortSignal.any([signal, stopWaiting.signal]) : stopWaiting.signal,
      ctx.requestId,
      headers,
    );
  } catch (error) {
    throw refusal ?? error;
  } finally {
    stop();
  }
}
