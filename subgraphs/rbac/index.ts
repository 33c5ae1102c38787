import { defineComponent } from '../../lib/component.js';
import type { SubgraphContext, SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { loadRoleScopes, type RoleScopeTable } from '../../schema/rbac/roleScopes.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import { createRbacResolvers } from './resolvers.js';

/** The rbac subgraph: the role → scope table and authorization decisions over GraphQL. It owns no tables. */
export function createRbacSubgraph(table: RoleScopeTable): SubgraphDefinition<SubgraphContext> {
  return {
    name: 'rbac',
    typeDefs: subgraphTypeDefs('rbac'),
    resolvers: createRbacResolvers(table) as SubgraphDefinition<SubgraphContext>['resolvers'],
    policy: policyFor('rbac'),
    createContext: (base) => base,
  };
}

/** The rbac component: its subgraph only, no tables (the gateway loads the same table for itself). */
export const rbacComponent = defineComponent({
  name: 'rbac',
  subgraphs: ['rbac'],
  needs: {},
  settings: (config) => ({ roleScopesFile: config.roleScopesFile }),
  async create({ settings }) {
    return { subgraphs: [createRbacSubgraph(loadRoleScopes(settings.roleScopesFile))] };
  },
});
