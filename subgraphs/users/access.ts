import { forbidden, notFound } from '../../lib/errors.js';
import { assertId } from '../../lib/ids.js';
import type { Principal } from '../../lib/identity.js';
import type { UsersContext } from './context.js';
import type { ProjectRow } from './store.js';

/**
 * Record-level authorization of the users subgraph (LLMariner §9: `api.organizations*` requests are
 * authorized without a project, and the handlers check ownership). Records of organizations the
 * caller does not belong to are reported as not found, so their existence does not leak.
 */
export function principalOf(ctx: UsersContext): Principal {
  // The policy map lets only authenticated callers reach resolvers that call this.
  if (!ctx.identity) throw forbidden('Not authorized');
  return ctx.identity.principal;
}

export function organizationRoleOf(ctx: UsersContext, organizationId: string) {
  return principalOf(ctx).organizations.find((o) => o.organizationId === organizationId)?.role;
}

export function requireOrganizationMember(ctx: UsersContext, organizationId: string, field = 'organizationId'): void {
  assertId('organization', organizationId, field);
  if (!organizationRoleOf(ctx, organizationId)) throw notFound('organization', organizationId);
}

export function requireOrganizationOwner(ctx: UsersContext, organizationId: string, field = 'organizationId'): void {
  requireOrganizationMember(ctx, organizationId, field);
  if (organizationRoleOf(ctx, organizationId) !== 'OWNER') {
    throw forbidden(`only owners of organization ${organizationId} can do this`);
  }
}

/** The project, if the caller can see it (a role in it, or ownership of its organization). */
export async function visibleProject(ctx: UsersContext, projectId: string, field = 'projectId'): Promise<ProjectRow> {
  assertId('project', projectId, field);
  const visible = principalOf(ctx).projects.some((p) => p.projectId === projectId);
  const project = visible ? await ctx.loaders.project.load(projectId) : null;
  if (!project) throw notFound('project', projectId);
  return project;
}

/** Organization owners and project owners manage a project's members and keys. */
export function canManageProject(ctx: UsersContext, project: ProjectRow): boolean {
  if (organizationRoleOf(ctx, project.organization_id) === 'OWNER') return true;
  return principalOf(ctx).projects.some((p) => p.projectId === project.id && p.role === 'OWNER');
}

export function requireProjectManager(ctx: UsersContext, project: ProjectRow): void {
  if (!canManageProject(ctx, project)) throw forbidden(`only owners of project ${project.id} or its organization can do this`);
}
