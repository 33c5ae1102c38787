import { graphqlRequest } from '../../lib/graphqlClient.js';
import { INTERNAL_TOKEN_HEADER, type InternalTokens } from '../../lib/identity.js';
import type { SubgraphContext } from '../../lib/subgraphServer.js';

/** What routing needs of a model. */
export interface ServableModel {
  id: string;
  activationStatus: 'ACTIVE' | 'INACTIVE';
  loadingStatus: string;
}

export interface ModelsClient {
  /** The model as the caller sees it (visibility rules of the models subgraph), or null. */
  model(caller: Pick<SubgraphContext, 'requestId' | 'identity'>, id: string): Promise<ServableModel | null>;
}

const MODEL = `query InferenceModel($id: ID!) { model(id: $id, includeLoading: true) { id activationStatus loadingStatus } }`;

/**
 * The inference subgraph does not own models: it asks the models subgraph on behalf of the caller,
 * so a caller reaches only models its project may see (the same pattern as models → files).
 */
export function createModelsClient(options: { url: string; tokens: InternalTokens }): ModelsClient {
  return {
    async model(caller, id) {
      const token = await options.tokens.mint('models', caller.requestId, caller.identity);
      const data = await graphqlRequest<{ model: ServableModel | null }>(options.url, MODEL, { id }, { [INTERNAL_TOKEN_HEADER]: token }, AbortSignal.timeout(10_000));
      return data.model;
    },
  };
}
