/**
 * The role → scope table moved to schema/rbac/roleScopes.ts (the gateway needs it and must not import
 * a subgraph). This re-export keeps test/security/proxies.test.ts's import working; import from
 * schema/rbac/roleScopes.ts instead.
 */
export { DEFAULT_ROLE_SCOPES, loadRoleScopes, type RoleName, type RoleScopeTable } from '../../schema/rbac/roleScopes.js';
