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

export interface ModelsClient {
  /** The model as the caller sees it (visibility rules of the models subgraph), or null. */
  model(caller: Pick<SubgraphContext, 'requestId' | 'identity'>, id: string): Promise<ServableModel | null>;
  /** Activates the model as the caller (on-demand activation: the caller's own rights apply). */
  activate(caller: Pick<SubgraphContext, 'requestId' | 'identity'>, id: string): Promise<void>;
}

const MODEL = `query InferenceModel($id: ID!) {
  model(id: $id, includeLoading: true) { id activationStatus loadingStatus config { clusterAllocationPolicy { enableOnDemandAllocation } } }
}`;
const ACTIVATE = `mutation InferenceActivate($id: ID!) { activateModel(id: $id) { id } }`;

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
  };
}
