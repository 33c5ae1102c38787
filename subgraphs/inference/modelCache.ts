import type { Identity } from '../../lib/identity.js';
import type { Logger } from '../../lib/logging.js';
import type { PubSub } from '../../lib/pubsub.js';
import { MODELS_CHANGED_CHANNEL } from './channels.js';
import type { ModelsClient, ServableModel } from './modelsClient.js';

/** What the models subgraph's `model` query checks before answering (schema/rbac/policy.ts `models.Query.model`). */
const MODELS_READ_SCOPE = 'api.model.read';

/** How long a model's answer is kept at most, whatever was announced: the bound on a lost announcement. */
export const MODEL_CACHE_TTL_MS = 5_000;

/** The most answers kept at once; past it the cache starts over (each is a few hundred bytes). */
const MAX_ENTRIES = 10_000;

interface Entry {
  expires: number;
  /** Shared by every request that reads it: not to be changed. */
  model: ServableModel;
}

/**
 * The models subgraph's answer to "the model as this caller sees it" (modelsClient.ts `model`), kept
 * in memory so that an inference request pays a map read, not a round trip (DESIGN §3 "Inference").
 *
 * Keyed by what the answer depends on: the caller's tenant, organization and project (visibility is
 * the tenant's catalog plus the project's own models: subgraphs/models/store.ts `visible`) and the
 * model id. Only callers the models subgraph would answer at all share it: one without
 * `api.model.read` in its project is asked for as before, and refused there.
 *
 * Kept until the models subgraph announces a change of a model of the tenant on
 * MODELS_CHANGED_CHANNEL (published after every mutation of a model: created, deleted, activated,
 * deactivated, configured, loaded); the tenant's answers are then dropped. The notification is sent
 * when the change commits, before the mutation answers, so the next request sees the change. A lost
 * notification (a LISTEN connection re-opened) costs at most `MODEL_CACHE_TTL_MS`: no answer is
 * older than that. "Not found" is never kept (the model may be created the next moment), nor is a
 * failed answer. `activate` drops the tenant's answers itself, so the activating replica never
 * activates twice waiting for the announcement.
 */
export class CachedModels implements ModelsClient {
  /** By tenant, then by `organization project model`. */
  private readonly answers = new Map<string, Map<string, Entry>>();
  /** Changes announced per tenant: an answer asked before the last one is not kept. */
  private readonly generations = new Map<string, number>();
  private size = 0;

  constructor(
    private readonly models: ModelsClient,
    private readonly logger: Logger,
    private readonly ttlMs = MODEL_CACHE_TTL_MS,
  ) {}

  /** Listens to the models subgraph's announcements; returns the unsubscribe. */
  listen(pubsub: PubSub): Promise<() => Promise<void>> {
    return pubsub.subscribe(MODELS_CHANGED_CHANNEL, (tenantId) => this.changed(tenantId));
  }

  /** A model of the tenant changed: its answers are dropped. */
  changed(tenantId: string): void {
    this.generations.set(tenantId, (this.generations.get(tenantId) ?? 0) + 1);
    const dropped = this.answers.get(tenantId);
    if (!dropped) return;
    this.size -= dropped.size;
    this.answers.delete(tenantId);
  }

  async model(caller: Parameters<ModelsClient['model']>[0], id: string): Promise<ServableModel | null> {
    const scope = cacheScope(caller.identity);
    if (!scope) return this.models.model(caller, id);
    const now = Date.now();
    const key = `${scope.organizationId} ${scope.projectId} ${id}`;
    const cached = this.answers.get(scope.tenantId)?.get(key);
    if (cached && cached.expires > now) return cached.model;
    const generation = this.generations.get(scope.tenantId) ?? 0;
    const answer = await this.models.model(caller, id);
    // Kept only if nothing of the tenant changed while it was asked (it may predate the change).
    if (answer && (this.generations.get(scope.tenantId) ?? 0) === generation) this.keep(scope.tenantId, key, { expires: now + this.ttlMs, model: answer });
    return answer;
  }

  async activate(caller: Parameters<ModelsClient['activate']>[0], id: string): Promise<void> {
    try {
      await this.models.activate(caller, id);
    } finally {
      // Whatever the outcome, the model may have changed; the announcement drops the other replicas' answers.
      if (caller.identity) this.changed(caller.identity.principal.tenantId);
    }
  }

  owners(...args: Parameters<ModelsClient['owners']>): ReturnType<ModelsClient['owners']> {
    return this.models.owners(...args);
  }

  private keep(tenantId: string, key: string, entry: Entry): void {
    if (this.size >= MAX_ENTRIES) {
      this.logger.debug({ entries: this.size }, 'model answers: cache full, starting over');
      this.answers.clear();
      this.size = 0;
    }
    let tenant = this.answers.get(tenantId);
    if (!tenant) this.answers.set(tenantId, (tenant = new Map()));
    if (!tenant.has(key)) this.size++;
    tenant.set(key, entry);
  }
}

/** The caller's visibility scope, when the models subgraph would answer it (see the class); else null: not cached. */
function cacheScope(identity: Identity | null): { tenantId: string; organizationId: string; projectId: string } | null {
  const project = identity?.project;
  if (!identity || !project || !project.scopes.includes(MODELS_READ_SCOPE)) return null;
  return { tenantId: identity.principal.tenantId, organizationId: project.organizationId, projectId: project.projectId };
}
