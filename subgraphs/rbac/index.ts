import { defineComponent } from '../../lib/component.js';
import type { SubgraphContext, SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import { createRbacResolvers } from './resolvers.js';
import { loadRoleScopes, type RoleScopeTable } from '../../schema/rbac/roleScopes.js';

// The table and project resolution are the contract's (schema/rbac/), shared with the gateway, which
// resolves every request's project itself; this subgraph serves them over GraphQL.
export { resolveProject, type ProjectRequest, type ProjectResolution } from '../../schema/rbac/projectResolution.js';
export { DEFAULT_ROLE_SCOPES, loadRoleScopes, type RoleName, type RoleScopeTable } from '../../schema/rbac/roleScopes.js';

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
