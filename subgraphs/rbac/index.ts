import type { SubgraphContext, SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import { createRbacResolvers } from './resolvers.js';
import type { RoleScopeTable } from './roleScopes.js';

export { resolveProject, type ProjectRequest, type ProjectResolution } from './authorization.js';
export { DEFAULT_ROLE_SCOPES, loadRoleScopes, type RoleName, type RoleScopeTable } from './roleScopes.js';

/** The rbac subgraph: the role → scope table and authorization decisions. It owns no tables. */
export function createRbacSubgraph(table: RoleScopeTable): SubgraphDefinition<SubgraphContext> {
  return {
    name: 'rbac',
    typeDefs: subgraphTypeDefs('rbac'),
    resolvers: createRbacResolvers(table) as SubgraphDefinition<SubgraphContext>['resolvers'],
    policy: policyFor('rbac'),
    createContext: (base) => base,
  };
}
