import type { SubgraphContext } from '../../lib/subgraphServer.js';
import { badInput } from '../../lib/errors.js';
import { resolveProject } from '../../schema/rbac/projectResolution.js';
import type { Resolvers } from './generated/resolvers.js';
import type { RoleScopeTable } from '../../schema/rbac/roleScopes.js';

const RESOURCE = /^[a-z0-9_.-]{1,100}$/;

export function createRbacResolvers(table: RoleScopeTable): Resolvers<SubgraphContext> {
  return {
    Query: {
      roleScopes: () => Object.entries(table).map(([role, scopes]) => ({ role, scopes })),
      authorize: (_p, { resource, capability, organizationId, projectId }, ctx) => {
        if (!RESOURCE.test(resource)) throw badInput('resource must look like api.model', 'resource');
        const principal = ctx.identity!.principal;
        const base = {
          userId: principal.userId,
          tenantId: principal.tenantId,
          apiKeyId: principal.apiKey?.id ?? null,
          excludedFromRateLimiting: principal.apiKey?.excludedFromRateLimiting ?? false,
        };
        const resolution = resolveProject(principal, { organizationId, projectId }, table);
        if (!resolution.ok) return { ...base, authorized: false, reason: resolution.reason, platformOrganization: false, scopes: [] };
        const { context } = resolution;
        const platformOrganization = principal.organizations.some((o) => o.organizationId === context.organizationId && o.isDefault);
        const scope = `${resource}.${capability.toLowerCase()}`;
        const authorized = context.scopes.includes(scope);
        return {
          ...base,
          authorized,
          reason: authorized ? null : `role ${context.role} lacks ${scope}`,
          organizationId: context.organizationId,
          platformOrganization,
          projectId: context.projectId,
          project: { id: context.projectId },
          role: context.role,
          scopes: context.scopes,
        };
      },
    },
  };
}
