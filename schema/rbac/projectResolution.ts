import type { Principal, ProjectContext } from '../../lib/identity.js';
import type { RoleName, RoleScopeTable } from './roleScopes.js';

export interface ProjectRequest {
  /** From `OpenAI-Organization` (or an explicit argument). */
  organizationId?: string | null | undefined;
  /** From `OpenAI-Project` (or an explicit argument). */
  projectId?: string | null | undefined;
}

export type ProjectResolution = { ok: true; context: ProjectContext } | { ok: false; reason: string };

/**
 * Resolves the project a request runs in and the scopes the caller has there
 * (LLMariner rbac-manager authorization.go, reference §9):
 * - an API key fixes its project; headers cannot pick another;
 * - otherwise a requested project (its organization must match a requested organization), else the
 *   default project of the requested organization, else the default project, else the first;
 * - org OWNER → organizationOwner, TENANT_SYSTEM → tenantSystem, READER → projectOwner/projectMember
 *   by project role; a READER without a project role is refused.
 */
export function resolveProject(principal: Principal, request: ProjectRequest, table: RoleScopeTable): ProjectResolution {
  let projectId: string;
  if (principal.apiKey) {
    if (request.projectId && request.projectId !== principal.apiKey.projectId) {
      return { ok: false, reason: `this API key is bound to project ${principal.apiKey.projectId}` };
    }
    if (request.organizationId && request.organizationId !== principal.apiKey.organizationId) {
      return { ok: false, reason: `this API key is bound to organization ${principal.apiKey.organizationId}` };
    }
    projectId = principal.apiKey.projectId;
  } else if (request.projectId) {
    const binding = principal.projects.find((p) => p.projectId === request.projectId);
    if (!binding) return { ok: false, reason: `not a member of project ${request.projectId}` };
    if (request.organizationId && request.organizationId !== binding.organizationId) {
      return { ok: false, reason: `project ${request.projectId} is not in organization ${request.organizationId}` };
    }
    projectId = binding.projectId;
  } else {
    const candidates = request.organizationId ? principal.projects.filter((p) => p.organizationId === request.organizationId) : principal.projects;
    const chosen = candidates.find((p) => p.isDefault) ?? candidates[0];
    if (!chosen) {
      return {
        ok: false,
        reason: request.organizationId
          ? `no role in any project of organization ${request.organizationId} (organization readers need a project role)`
          : 'no role in any project (organization readers need a project role)',
      };
    }
    projectId = chosen.projectId;
  }

  const project = principal.projects.find((p) => p.projectId === projectId);
  const organizationId = project?.organizationId ?? principal.apiKey?.organizationId;
  const orgRole = principal.organizations.find((o) => o.organizationId === organizationId)?.role;
  if (!organizationId || !orgRole) return { ok: false, reason: `no role in the organization of project ${projectId}` };

  let role: RoleName;
  if (orgRole === 'OWNER') role = 'organizationOwner';
  else if (orgRole === 'TENANT_SYSTEM') role = 'tenantSystem';
  else if (project?.role === 'OWNER') role = 'projectOwner';
  else if (project?.role === 'MEMBER') role = 'projectMember';
  else return { ok: false, reason: `organization readers need a project role in project ${projectId}` };

  return { ok: true, context: { organizationId, projectId, role, scopes: [...table[role]] } };
}
