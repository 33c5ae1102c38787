import { servesOrganization } from '../../lib/clusterAccess.js';
import { badInput, failedPrecondition, forbidden, notFound, unauthenticated } from '../../lib/errors.js';
import { assertId } from '../../lib/ids.js';
import { organizationRoleOf, principalOf, requireOrganizationMember, requireOrganizationOwner, requireProjectManager, visibleProject } from './access.js';
import type { UsersContext } from './context.js';
import type { Resolvers } from './generated/resolvers.js';
import type { ApiKeyRow, OrganizationMemberRow, ProjectMemberRow } from './store.js';
import { defaultNamespace, normalizeUserId, validAssignments, validTitle } from './validation.js';

const iso = (d: Date) => d.toISOString();

function deleted(id: string) {
  return { id, deleted: true };
}

/** The key, if the caller may manage it: its owner, or an owner of its project or organization. */
async function manageableKey(ctx: UsersContext, id: string): Promise<ApiKeyRow> {
  assertId('apiKey', id, 'id');
  const key = await ctx.store.apiKeyById(id);
  if (!key || !organizationRoleOf(ctx, key.organization_id)) throw notFound('API key', id);
  if (key.user_id === principalOf(ctx).userId) return key;
  const project = await visibleProject(ctx, key.project_id).catch(() => null);
  if (!project) throw notFound('API key', id);
  requireProjectManager(ctx, project);
  return key;
}

export const resolvers: Resolvers<UsersContext> = {
  Query: {
    // The namespaces the calling agent binds its project role in (agent/kubernetes/projectRoleBindings.ts):
    // those of the projects of organizations its cluster serves, assigned to it or to no cluster in particular.
    workerNamespaces: async (_p, _a, ctx) => {
      const worker = ctx.worker;
      if (!worker) throw unauthenticated('A cluster registration key is required');
      const projects = (await ctx.store.tenantAssignments(worker.tenantId)).filter((p) => servesOrganization(worker, p.organization_id));
      const mine = projects.flatMap((p) => p.assignments.filter((a) => a.clusterId === null || a.clusterId === worker.clusterId).map((a) => a.namespace));
      return [...new Set(mine)].sort();
    },
    self: async (_p, _a, ctx) => {
      const user = await ctx.loaders.user.load(principalOf(ctx).userId);
      if (!user) throw notFound('user', principalOf(ctx).userId);
      return user;
    },
    organizations: (_p, args, ctx) =>
      ctx.store.listOrganizations(
        principalOf(ctx).organizations.map((o) => o.organizationId),
        args,
      ),
    organization: async (_p, { id }, ctx) => {
      assertId('organization', id, 'id');
      if (!organizationRoleOf(ctx, id)) return null;
      return ctx.loaders.organization.load(id);
    },
    projects: (_p, { organizationId, ...page }, ctx) => {
      requireOrganizationMember(ctx, organizationId);
      return ctx.store.listProjects(
        organizationId,
        principalOf(ctx).projects.map((p) => p.projectId),
        page,
      );
    },
    project: async (_p, { id }, ctx) => {
      assertId('project', id, 'id');
      return visibleProject(ctx, id, 'id').catch(() => null);
    },
    apiKeys: async (_p, args, ctx) => {
      const projectId = ctx.identity!.project!.projectId;
      const project = await visibleProject(ctx, projectId);
      const owner =
        organizationRoleOf(ctx, project.organization_id) === 'OWNER' || principalOf(ctx).projects.some((p) => p.projectId === projectId && p.role === 'OWNER');
      return ctx.store.listApiKeys(projectId, owner ? null : principalOf(ctx).userId, args);
    },
    users: (_p, args, ctx) =>
      ctx.store.listUsersInOrganizations(
        principalOf(ctx)
          .organizations.filter((o) => o.role === 'OWNER')
          .map((o) => o.organizationId),
        args,
      ),
    principalByApiKey: (_p, { secret }, ctx) => ctx.store.principalByApiKey(secret),
    principalByEmail: (_p, { email }, ctx) => ctx.store.principalByUser(email.trim().toLowerCase()),
  },

  Mutation: {
    createOrganization: async (_p, { input }, ctx) => {
      const title = validTitle(input.title, 'input.title');
      const principal = principalOf(ctx);
      const ownsDefault = principal.organizations.some((o) => o.isDefault && o.role === 'OWNER');
      if (!ownsDefault) throw forbidden('only owners of the default organization can create organizations');
      return ctx.store.createOrganization(title, principal.userId);
    },
    deleteOrganization: async (_p, { id }, ctx) => {
      requireOrganizationOwner(ctx, id, 'id');
      const org = await ctx.loaders.organization.load(id);
      if (!org) throw notFound('organization', id);
      if (org.is_default) throw failedPrecondition('the default organization cannot be deleted');
      await ctx.store.deleteOrganization(id);
      return deleted(id);
    },
    addOrganizationMember: async (_p, { organizationId, userId, role }, ctx) => {
      requireOrganizationOwner(ctx, organizationId);
      const user = normalizeUserId(userId);
      const existing = await ctx.store.organizationMember(organizationId, user);
      if (existing?.role === 'OWNER' && role !== 'OWNER' && (await ctx.store.countOrganizationOwners(organizationId)) <= 1) {
        throw failedPrecondition('an organization must keep at least one owner');
      }
      return ctx.store.addOrganizationMember(organizationId, user, role);
    },
    removeOrganizationMember: async (_p, { organizationId, userId }, ctx) => {
      requireOrganizationOwner(ctx, organizationId);
      const user = normalizeUserId(userId);
      const existing = await ctx.store.organizationMember(organizationId, user);
      if (!existing) throw notFound('member', user);
      if (existing.role === 'OWNER' && (await ctx.store.countOrganizationOwners(organizationId)) <= 1) {
        throw failedPrecondition('an organization must keep at least one owner');
      }
      await ctx.store.removeOrganizationMember(organizationId, user);
      return deleted(user);
    },

    createProject: async (_p, { input }, ctx) => {
      requireOrganizationOwner(ctx, input.organizationId, 'input.organizationId');
      const title = validTitle(input.title, 'input.title');
      if (!input.assignments) {
        return ctx.store.createProject(input.organizationId, title, (projectId) => [
          { clusterId: null, namespace: defaultNamespace(title, projectId), kueueQueueName: null, nodeSelector: [] },
        ]);
      }
      const assignments = validAssignments(input.assignments, 'input.assignments', ctx.reservedNamespaces);
      if (assignments.length === 0) throw badInput('input.assignments must not be empty', 'input.assignments');
      return ctx.store.createProject(input.organizationId, title, assignments);
    },
    updateProject: async (_p, { input }, ctx) => {
      const project = await visibleProject(ctx, input.id, 'input.id');
      requireOrganizationOwner(ctx, project.organization_id);
      const changes: { title?: string; assignments?: ReturnType<typeof validAssignments> } = {};
      if (input.title != null) changes.title = validTitle(input.title, 'input.title');
      if (input.assignments != null) {
        changes.assignments = validAssignments(input.assignments, 'input.assignments', ctx.reservedNamespaces);
        if (changes.assignments.length === 0) throw badInput('input.assignments must not be empty', 'input.assignments');
      }
      if (!Object.keys(changes).length) throw badInput('nothing to update: give title or assignments', 'input');
      return ctx.store.updateProject(project.id, changes);
    },
    deleteProject: async (_p, { id }, ctx) => {
      const project = await visibleProject(ctx, id, 'id');
      requireOrganizationOwner(ctx, project.organization_id);
      if (project.is_default) throw failedPrecondition('the default project cannot be deleted');
      await ctx.store.deleteProject(id);
      return deleted(id);
    },
    addProjectMember: async (_p, { projectId, userId, role }, ctx) => {
      const project = await visibleProject(ctx, projectId);
      requireProjectManager(ctx, project);
      const user = normalizeUserId(userId);
      if (!(await ctx.store.organizationMember(project.organization_id, user))) {
        throw failedPrecondition(`${user} is not a member of organization ${project.organization_id}: add them there first`);
      }
      return ctx.store.addProjectMember(projectId, user, role);
    },
    removeProjectMember: async (_p, { projectId, userId }, ctx) => {
      const project = await visibleProject(ctx, projectId);
      requireProjectManager(ctx, project);
      const user = normalizeUserId(userId);
      if (!(await ctx.store.removeProjectMember(projectId, user))) throw notFound('member', user);
      return deleted(user);
    },

    createApiKey: async (_p, { input }, ctx) => {
      const name = validTitle(input.name, 'input.name');
      const projectId = input.projectId ?? ctx.identity?.project?.projectId;
      if (!projectId) throw badInput('input.projectId: the caller has no current project; name one', 'input.projectId');
      const project = await visibleProject(ctx, projectId, 'input.projectId');
      const common = {
        name,
        organizationId: project.organization_id,
        projectId: project.id,
        excludedFromRateLimiting: input.excludedFromRateLimiting ?? false,
      };
      let created: { id: string; secret: string };
      const caller = principalOf(ctx).userId;
      const userId = input.userId == null ? caller : normalizeUserId(input.userId);
      if (input.isServiceAccount && input.userId != null) throw badInput('input.userId: a service-account key acts as its own new user', 'input.userId');
      if (userId !== caller) {
        // LLMariner lets organization owners make keys for others (service accounts); a member's key, too.
        requireOrganizationOwner(ctx, project.organization_id);
        const member =
          (await ctx.store.projectMembershipsOfUsers([userId])).some((m) => m.project_id === project.id) ||
          (await ctx.store.organizationMember(project.organization_id, userId))?.role === 'OWNER';
        if (!member) throw failedPrecondition(`${userId} is not a member of project ${project.id}: add them first (addProjectMember)`);
      }
      if (input.isServiceAccount) {
        requireOrganizationOwner(ctx, project.organization_id);
        created = await ctx.store.createServiceAccountKey({ ...common, role: input.role ?? 'READER' });
      } else {
        if (input.role != null) throw badInput('input.role applies to service-account keys only', 'input.role');
        if (input.excludedFromRateLimiting && organizationRoleOf(ctx, project.organization_id) !== 'OWNER') {
          throw forbidden('only organization owners can exclude keys from rate limiting');
        }
        created = await ctx.store.createApiKey({ ...common, userId });
      }
      const apiKey = await ctx.store.apiKeyById(created.id);
      return { apiKey: apiKey!, secret: created.secret };
    },
    updateApiKey: async (_p, { input }, ctx) => {
      const key = await manageableKey(ctx, input.id);
      const changes: { name?: string; excludedFromRateLimiting?: boolean } = {};
      if (input.name != null) changes.name = validTitle(input.name, 'input.name');
      if (input.excludedFromRateLimiting != null) {
        if (organizationRoleOf(ctx, key.organization_id) !== 'OWNER') {
          throw forbidden('only organization owners can change rate-limit exclusion');
        }
        changes.excludedFromRateLimiting = input.excludedFromRateLimiting;
      }
      if (!Object.keys(changes).length) throw badInput('nothing to update: give name or excludedFromRateLimiting', 'input');
      await ctx.store.updateApiKey(key.id, changes);
      return (await ctx.store.apiKeyById(key.id))!;
    },
    deleteApiKey: async (_p, { id }, ctx) => {
      const key = await manageableKey(ctx, id);
      await ctx.store.deleteApiKey(key.id);
      return deleted(id);
    },
  },

  Organization: {
    __resolveReference: async (ref, ctx) => (organizationRoleOf(ctx, ref.id) ? ctx.loaders.organization.load(ref.id) : null),
    isDefault: (o) => o.is_default,
    createdAt: (o) => iso(o.created_at),
    summary: (o, _a, ctx) => ctx.loaders.organizationSummary.load(o.id),
    members: (o, args, ctx) => {
      requireOrganizationOwner(ctx, o.id, 'id');
      return ctx.store.listOrganizationMembers(o.id, args);
    },
    projects: (o, args, ctx) =>
      ctx.store.listProjects(
        o.id,
        principalOf(ctx).projects.map((p) => p.projectId),
        args,
      ),
  },
  Project: {
    __resolveReference: async (ref, ctx) => visibleProject(ctx, ref.id, 'id').catch(() => null),
    organizationId: (p) => p.organization_id,
    organization: async (p, _a, ctx) => (await ctx.loaders.organization.load(p.organization_id))!,
    isDefault: (p) => p.is_default,
    createdAt: (p) => iso(p.created_at),
    assignments: (p) => p.assignments,
    summary: async (p, _a, ctx) => ({ userCount: await ctx.loaders.projectUserCount.load(p.id) }),
    members: (p, args, ctx) => ctx.store.listProjectMembers(p.id, args),
  },
  User: {
    __resolveReference: async (ref, ctx) => ctx.loaders.user.load(ref.id),
    internalId: (u) => u.internal_id,
    isServiceAccount: (u) => u.is_service_account,
    // Only bindings in organizations the caller belongs to: another tenant's org stays invisible.
    organizationRoleBindings: async (u, _a, ctx) =>
      (await ctx.loaders.organizationBindings.load(u.id)).filter((b) => organizationRoleOf(ctx, b.organization_id)),
    projectRoleBindings: async (u, _a, ctx) => {
      const visible = new Set(principalOf(ctx).projects.map((p) => p.projectId));
      return (await ctx.loaders.projectBindings.load(u.id)).filter((b) => visible.has(b.project_id));
    },
  },
  OrganizationRoleBinding: {
    organization: async (b: OrganizationMemberRow, _a, ctx) => (await ctx.loaders.organization.load(b.organization_id))!,
  },
  ProjectRoleBinding: {
    project: async (b: ProjectMemberRow, _a, ctx) => (await ctx.loaders.project.load(b.project_id))!,
  },
  OrganizationMember: {
    user: async (m, _a, ctx) => (await ctx.loaders.user.load(m.user_id))!,
    createdAt: (m) => iso(m.created_at),
  },
  ProjectMember: {
    user: async (m, _a, ctx) => (await ctx.loaders.user.load(m.user_id))!,
    createdAt: (m) => iso(m.created_at),
  },
  ApiKey: {
    __resolveReference: async (ref, ctx) => manageableKey(ctx, ref.id).catch(() => null),
    secret: (k) => k.secret_hint,
    createdAt: (k) => iso(k.created_at),
    user: async (k, _a, ctx) => (await ctx.loaders.user.load(k.user_id))!,
    organization: async (k, _a, ctx) => (await ctx.loaders.organization.load(k.organization_id))!,
    project: async (k, _a, ctx) => (await ctx.loaders.project.load(k.project_id))!,
    organizationRole: (k) => k.organization_role,
    projectRole: (k) => k.project_role,
    isServiceAccount: (k) => k.is_service_account,
    excludedFromRateLimiting: (k) => k.excluded_from_rate_limiting,
  },
  Principal: {
    apiKey: (p) => p.apiKey,
  },
};
