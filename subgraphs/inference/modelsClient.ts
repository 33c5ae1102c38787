import { graphqlRequest } from '../../lib/graphqlClient.js';
import { INTERNAL_TOKEN_HEADER, type InternalTokens } from '../../lib/identity.js';
import type { SubgraphContext } from '../../lib/subgraphServer.js';

/** What routing needs of a model. */
export interface ServableModel {
  id: string;
  activationStatus: 'ACTIVE' | 'INACTIVE';
  loadingStatus: string;
  config: { clusterAllocationPolicy: { enableOnDemandAllocation: boolean } };
}

/** Whose a model is (the models subgraph's `modelOwners`): null organization and project for the tenant's shared catalog. */
export interface ModelOwner {
  id: string;
  organizationId: string | null;
  projectId: string | null;
  isBaseModel: boolean;
}

export interface ModelsClient {
  /** The model as the caller sees it (visibility rules of the models subgraph), or null. */
  model(caller: Pick<SubgraphContext, 'requestId' | 'identity'>, id: string): Promise<ServableModel | null>;
  /** Activates the model as the caller (on-demand activation: the caller's own rights apply). */
  activate(caller: Pick<SubgraphContext, 'requestId' | 'identity'>, id: string): Promise<void>;
  /**
   * The owners of those of `ids` that exist in the tenant, asked as the system (a cluster's report and
   * the status views judge runtimes of models the caller may not see by name).
   */
  owners(requestId: string, tenantId: string, ids: readonly string[]): Promise<Map<string, ModelOwner>>;
}

const MODEL = `query InferenceModel($id: ID!) {
  model(id: $id, includeLoading: true) { id activationStatus loadingStatus config { clusterAllocationPolicy { enableOnDemandAllocation } } }
}`;
const ACTIVATE = `mutation InferenceActivate($id: ID!) { activateModel(id: $id) { id } }`;
/** The most ids the models subgraph takes in one `modelOwners` call. */
const MAX_OWNER_IDS = 1000;
const OWNERS = `query InferenceModelOwners($tenantId: ID!, $ids: [ID!]!) { modelOwners(tenantId: $tenantId, ids: $ids) { id organizationId projectId isBaseModel } }`;

/**
 * The inference subgraph does not own models: it asks the models subgraph on behalf of the caller,
 * so a caller reaches only models its project may see (the same pattern as models → files).
 */
export function createModelsClient(options: { url: string; tokens: InternalTokens }): ModelsClient {
  const call = async <T>(caller: Pick<SubgraphContext, 'requestId' | 'identity'>, query: string, id: string) =>
    graphqlRequest<T>(options.url, query, { id }, { [INTERNAL_TOKEN_HEADER]: await options.tokens.mint('models', caller.requestId, caller.identity) }, AbortSignal.timeout(10_000));
  return {
    model: async (caller, id) => (await call<{ model: ServableModel | null }>(caller, MODEL, id)).model,
    activate: async (caller, id) => {
      await call(caller, ACTIVATE, id);
    },
    owners: async (requestId, tenantId, ids) => {
      const unique = [...new Set(ids)];
      if (unique.length === 0) return new Map();
      const headers = { [INTERNAL_TOKEN_HEADER]: await options.tokens.mint('models', requestId, null, true) };
      const batches: string[][] = [];
      for (let i = 0; i < unique.length; i += MAX_OWNER_IDS) batches.push(unique.slice(i, i + MAX_OWNER_IDS));
      const answers = await Promise.all(
        batches.map((batch) => graphqlRequest<{ modelOwners: ModelOwner[] }>(options.url, OWNERS, { tenantId, ids: batch }, headers, AbortSignal.timeout(10_000))),
      );
      return new Map(answers.flatMap(({ modelOwners }) => modelOwners.map((owner) => [owner.id, owner] as const)));
    },
  };
}
