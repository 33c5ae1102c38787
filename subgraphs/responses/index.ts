import { defineComponent } from '../../lib/component.js';
import type { SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import type { ResponsesContext } from './context.js';
import { migrations } from './migrations/index.js';
import { resolvers } from './resolvers.js';
import { ResponseStore, SCHEMA } from './store.js';

/**
 * The responses component: the stored responses of OpenAI's Responses API, their input items and their
 * chains. It generates nothing: rest-compat answers /v1/responses through the inference data plane (the
 * caller's own authorization, rate limits and usage records) and records the result here (README.md).
 */
export const responsesComponent = defineComponent({
  name: 'responses',
  subgraphs: ['responses'],
  needs: { database: true },
  migrations: { schema: SCHEMA, migrations },
  settings: () => ({}),
  async create({ db }) {
    const store = new ResponseStore(db.knex);
    const definition: SubgraphDefinition<ResponsesContext> = {
      name: 'responses',
      typeDefs: subgraphTypeDefs('responses'),
      resolvers: resolvers as SubgraphDefinition<ResponsesContext>['resolvers'],
      policy: policyFor('responses'),
      createContext: (base) => ({ ...base, store }),
    };
    return { subgraphs: [definition], exposed: { store } };
  },
});
