import { randomUUID } from 'node:crypto';
import type { Knex } from '../../lib/db.js';
import { isUniqueViolation, toCount } from '../../lib/db.js';
import { conflict } from '../../lib/errors.js';
import { hashSecret, newApiKeySecret, newId } from '../../lib/ids.js';
import type { OrganizationRole, Principal, ProjectRole } from '../../lib/identity.js';
import { paginate, type Page, type PageArgs } from '../../lib/pagination.js';

export const SCHEMA = 'users';

/** Single-tenant installs use this tenant; tenant_id is on every row all the same. */
export const DEFAULT_TENANT_ID = 'tenant-default';

export interface Assignment {
  clusterId: string | null;
  namespace: string;
  kueueQueueName: string | null;
  nodeSelector: { key: string; value: string }[];
}

export interface OrganizationRow {
  id: string;
  tenant_id: string;
  title: string;
  is_default: boolean;
  created_at: Date;
}

export interface ProjectRow {
  id: string;
  tenant_id: string;
  organization_id: string;
  title: string;
  is_default: boolean;
  assignments: Assignment[];
  created_at: Date;
}

export interface UserRow {
  id: string;
  internal_id: string;
  tenant_id: string;
  is_service_account: boolean;
  created_at: Date;
}

export interface OrganizationMemberRow {
  organization_id: string;
  user_id: string;
  role: OrganizationRole;
  created_at: Date;
}

export interface ProjectMemberRow {
  project_id: string;
  user_id: string;
  role: ProjectRole;
  created_at: Date;
}

export interface ApiKeyRow {
  id: string;
  tenant_id: string;
  name: string;
  secret_hint: string;
  user_id: string;
  organization_id: string;
  project_id: string;
  excluded_from_rate_limiting: boolean;
  created_at: Date;
  /** The key user's current roles, joined in. */
  organization_role: OrganizationRole | null;
  project_role: ProjectRole | null;
  is_service_account: boolean;
}

/**
 * A namespace that two projects held before namespace claims existed: the older project kept it, the
 * newer one lost its assignments of it (migrations/002_namespace_claims.ts).
 */
export interface NamespaceClaimConflict {
  namespace: string;
  projectId: string;
  claimedByProjectId: string;
}

/** Namespaces another project of the tenant holds. */
class NamespacesTaken extends Error {
  constructor(readonly namespaces: string[]) {
    super(`namespaces taken: ${namespaces.join(', ')}`);
  }

  /** Does not say which project holds them: it may be another organization's. */
  toConflict() {
    const list = this.namespaces.map((n) => `"${n}"`).join(', ');
    return conflict(
      `namespace ${list} already ${this.namespaces.length === 1 ? 'belongs' : 'belong'} to another project: a namespace belongs to one project only; choose another`,
    );
  }
}

export interface BootstrapResult {
  /** This start created the default organization and project. */
  created: boolean;
  /** A generated admin key, returned on the first start only when no fixed key is configured. */
  adminApiKey?: string;
  /** A fixed key replaced the previous bootstrap key, which no longer works. */
  revokedPreviousKey: boolean;
  /** Namespace conflicts of existing projects that the namespace-claims migration resolved, not reported before. */
  namespaceConflicts: NamespaceClaimConflict[];
}

export { hashSecret };

/** LLMariner shows a key as its first 5 and last 2 characters. */
export function obfuscateSecret(secret: string): string {
  return `${secret.slice(0, 5)}...${secret.slice(-2)}`;
}

/** All SQL of the users subgraph. Knows nothing of GraphQL. */
export class UserStore {
  constructor(private readonly knex: Knex) {}

  private t(table: string, db: Knex | Knex.Transaction = this.knex): Knex.QueryBuilder {
    return db.withSchema(SCHEMA).table(table);
  }

  // --- organizations ---------------------------------------------------------------------------

  async organizationsByIds(ids: readonly string[]): Promise<OrganizationRow[]> {
    if (!ids.length) return [];
    return this.t('organizations').whereIn('id', ids);
  }

  listOrganizations(ids: string[], page: PageArgs): Promise<Page<OrganizationRow>> {
    return paginate<OrganizationRow>(() => this.t('organizations').whereIn('organizations.id', ids), 'organizations', page);
  }

  async createOrganization(title: string, ownerId: string): Promise<OrganizationRow> {
    const org: Omit<OrganizationRow, 'created_at'> = {
      id: newId('organization'),
      tenant_id: DEFAULT_TENANT_ID,
      title,
      is_default: false,
    };
    try {
      return await this.knex.transaction(async (trx) => {
        const [row] = await this.t('organizations', trx).insert(org).returning('*');
        await this.t('organization_members', trx).insert({ organization_id: org.id, user_id: ownerId, role: 'OWNER' });
        return row as OrganizationRow;
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw conflict(`an organization titled "${title}" already exists`);
      throw error;
    }
  }

  async deleteOrganization(id: string): Promise<boolean> {
    return (await this.t('organizations').where({ id }).delete()) > 0;
  }

  /** project and user counts per organization, in two grouped queries. */
  async organizationSummaries(ids: readonly string[]): Promise<Map<string, { projectCount: number; userCount: number }>> {
    const out = new Map(ids.map((id) => [id, { projectCount: 0, userCount: 0 }]));
    if (!ids.length) return out;
    const projects = await this.t('projects').whereIn('organization_id', ids).groupBy('organization_id').select('organization_id').count({ n: '*' });
    const users = await this.t('organization_members').whereIn('organization_id', ids).groupBy('organization_id').select('organization_id').count({ n: '*' });
    for (const r of projects as { organization_id: string; n: unknown }[]) out.get(r.organization_id)!.projectCount = toCount(r.n);
    for (const r of users as { organization_id: string; n: unknown }[]) out.get(r.organization_id)!.userCount = toCount(r.n);
    return out;
  }

  // --- projects --------------------------------------------------------------------------------

  /** Every project's organization and assignments in a tenant: what an agent's namespaces are drawn from (workerNamespaces). */
  async tenantAssignments(tenantId: string): Promise<Pick<ProjectRow, 'organization_id' | 'assignments'>[]> {
    return this.t('projects').where({ tenant_id: tenantId }).select('organization_id', 'assignments');
  }

  async projectsByIds(ids: readonly string[]): Promise<ProjectRow[]> {
    if (!ids.length) return [];
    return this.t('projects').whereIn('id', ids);
  }

  listProjects(organizationId: string, visibleIds: string[], page: PageArgs): Promise<Page<ProjectRow>> {
    return paginate<ProjectRow>(
      () => this.t('projects').where('projects.organization_id', organizationId).whereIn('projects.id', visibleIds),
      'projects',
      page,
    );
  }

  /**
   * Creates a project with its assignments and claims their namespaces, in one transaction. `assignments`
   * may be derived from the new project's id (the default namespace); a derived namespace that happens to
   * be taken is retried with another id, given namespaces are refused (CONFLICT).
   */
  async createProject(organizationId: string, title: string, assignments: Assignment[] | ((projectId: string) => Assignment[])): Promise<ProjectRow> {
    for (let attempt = 1; ; attempt++) {
      const id = newId('project');
      const wanted = typeof assignments === 'function' ? assignments(id) : assignments;
      try {
        return await this.knex.transaction(async (trx) => {
          const [row] = (await this.t('projects', trx)
            .insert({
              id,
              tenant_id: DEFAULT_TENANT_ID,
              organization_id: organizationId,
              title,
              is_default: false,
              assignments: JSON.stringify(wanted),
            })
            .returning('*')) as ProjectRow[];
          await this.claimNamespaces(row!, wanted, trx);
          return row!;
        });
      } catch (error) {
        if (error instanceof NamespacesTaken && typeof assignments === 'function' && attempt < 3) continue;
        if (error instanceof NamespacesTaken) throw error.toConflict();
        if (isUniqueViolation(error)) throw conflict(`a project titled "${title}" already exists in this organization`);
        throw error;
      }
    }
  }

  /** Changes a project; new assignments release the namespaces it no longer names and claim the new ones. */
  async updateProject(id: string, changes: { title?: string; assignments?: Assignment[] }): Promise<ProjectRow> {
    const patch: Record<string, unknown> = {};
    if (changes.title !== undefined) patch['title'] = changes.title;
    if (changes.assignments !== undefined) patch['assignments'] = JSON.stringify(changes.assignments);
    try {
      return await this.knex.transaction(async (trx) => {
        const [row] = (await this.t('projects', trx).where({ id }).update(patch).returning('*')) as ProjectRow[];
        if (row && changes.assignments !== undefined) await this.claimNamespaces(row, changes.assignments, trx);
        return row!;
      });
    } catch (error) {
      if (error instanceof NamespacesTaken) throw error.toConflict();
      if (isUniqueViolation(error)) throw conflict(`a project titled "${changes.title}" already exists in this organization`);
      throw error;
    }
  }

  /**
   * Makes the project's namespace claims those of `assignments`: a namespace name belongs to one project
   * per tenant, on every cluster (a claim is not per cluster: an assignment without a cluster covers them
   * all). The unique key of namespace_claims decides races: of two transactions claiming one name, the
   * second waits for the first and then finds the name taken. Throws NamespacesTaken; the caller's
   * transaction is then rolled back, changing nothing.
   */
  private async claimNamespaces(project: Pick<ProjectRow, 'id' | 'tenant_id'>, assignments: Assignment[], trx: Knex.Transaction): Promise<void> {
    // Sorted: two transactions claiming overlapping names take their index locks in one order (no deadlock).
    const names = [...new Set(assignments.map((a) => a.namespace))].sort();
    await this.t('namespace_claims', trx).where({ project_id: project.id }).whereNotIn('namespace', names).delete();
    if (!names.length) return;
    await this.t('namespace_claims', trx)
      .insert(names.map((namespace) => ({ tenant_id: project.tenant_id, namespace, project_id: project.id })))
      .onConflict(['tenant_id', 'namespace'])
      .ignore();
    const holders = (await this.t('namespace_claims', trx)
      .where({ tenant_id: project.tenant_id })
      .whereIn('namespace', names)
      .select('namespace', 'project_id')) as { namespace: string; project_id: string }[];
    const taken = holders
      .filter((h) => h.project_id !== project.id)
      .map((h) => h.namespace)
      .sort();
    if (taken.length) throw new NamespacesTaken(taken);
  }

  /** Conflicts the namespace-claims migration recorded and nobody was told of yet; marks them told. */
  private async unreportedNamespaceConflicts(trx: Knex.Transaction): Promise<NamespaceClaimConflict[]> {
    const rows = (await this.t('namespace_claim_conflicts', trx)
      .whereNull('reported_at')
      .update({ reported_at: trx.fn.now() })
      .returning(['namespace', 'project_id', 'claimed_by_project_id'])) as { namespace: string; project_id: string; claimed_by_project_id: string }[];
    return rows.map((r) => ({ namespace: r.namespace, projectId: r.project_id, claimedByProjectId: r.claimed_by_project_id }));
  }

  async deleteProject(id: string): Promise<boolean> {
    return (await this.t('projects').where({ id }).delete()) > 0;
  }

  async projectUserCounts(ids: readonly string[]): Promise<Map<string, number>> {
    const out = new Map(ids.map((id) => [id, 0]));
    if (!ids.length) return out;
    const rows = await this.t('project_members').whereIn('project_id', ids).groupBy('project_id').select('project_id').count({ n: '*' });
    for (const r of rows as { project_id: string; n: unknown }[]) out.set(r.project_id, toCount(r.n));
    return out;
  }

  // --- users and memberships -------------------------------------------------------------------

  async usersByIds(ids: readonly string[]): Promise<UserRow[]> {
    if (!ids.length) return [];
    return this.t('users').whereIn('id', ids);
  }

  /** Users who belong to any of the given organizations. */
  listUsersInOrganizations(organizationIds: string[], page: PageArgs): Promise<Page<UserRow>> {
    return paginate<UserRow>(
      () =>
        this.t('users').whereIn(
          'users.id',
          this.knex.withSchema(SCHEMA).table('organization_members').whereIn('organization_id', organizationIds).select('user_id'),
        ),
      'users',
      page,
    );
  }

  async ensureUser(id: string, trx: Knex | Knex.Transaction = this.knex, isServiceAccount = false): Promise<void> {
    await this.t('users', trx)
      .insert({ id, internal_id: randomUUID(), tenant_id: DEFAULT_TENANT_ID, is_service_account: isServiceAccount })
      .onConflict('id')
      .ignore();
  }

  async organizationMembershipsOfUsers(userIds: readonly string[]): Promise<OrganizationMemberRow[]> {
    if (!userIds.length) return [];
    return this.t('organization_members').whereIn('user_id', userIds).orderBy('created_at');
  }

  async projectMembershipsOfUsers(userIds: readonly string[]): Promise<ProjectMemberRow[]> {
    if (!userIds.length) return [];
    return this.t('project_members').whereIn('user_id', userIds).orderBy('created_at');
  }

  listOrganizationMembers(organizationId: string, page: PageArgs): Promise<Page<OrganizationMemberRow>> {
    return paginate<OrganizationMemberRow>(
      () => this.t('organization_members').where('organization_members.organization_id', organizationId),
      'organization_members',
      page,
      'user_id',
    );
  }

  listProjectMembers(projectId: string, page: PageArgs): Promise<Page<ProjectMemberRow>> {
    return paginate<ProjectMemberRow>(() => this.t('project_members').where('project_members.project_id', projectId), 'project_members', page, 'user_id');
  }

  async organizationMember(organizationId: string, userId: string): Promise<OrganizationMemberRow | undefined> {
    return this.t('organization_members').where({ organization_id: organizationId, user_id: userId }).first();
  }

  async countOrganizationOwners(organizationId: string): Promise<number> {
    const row = await this.t('organization_members').where({ organization_id: organizationId, role: 'OWNER' }).count({ n: '*' }).first();
    return toCount(row?.n);
  }

  /** Adds (or changes the role of) an organization member, creating the user if new. */
  async addOrganizationMember(organizationId: string, userId: string, role: OrganizationRole): Promise<OrganizationMemberRow> {
    return this.knex.transaction(async (trx) => {
      await this.ensureUser(userId, trx);
      const [row] = await this.t('organization_members', trx)
        .insert({ organization_id: organizationId, user_id: userId, role })
        .onConflict(['organization_id', 'user_id'])
        .merge({ role })
        .returning('*');
      return row as OrganizationMemberRow;
    });
  }

  /** Removes an organization member with their project roles and API keys in that organization. */
  async removeOrganizationMember(organizationId: string, userId: string): Promise<boolean> {
    return this.knex.transaction(async (trx) => {
      const removed = await this.t('organization_members', trx).where({ organization_id: organizationId, user_id: userId }).delete();
      await this.t('project_members', trx)
        .where({ user_id: userId })
        .whereIn('project_id', trx.withSchema(SCHEMA).table('projects').where({ organization_id: organizationId }).select('id'))
        .delete();
      await this.t('api_keys', trx).where({ organization_id: organizationId, user_id: userId }).delete();
      return removed > 0;
    });
  }

  async addProjectMember(projectId: string, userId: string, role: ProjectRole): Promise<ProjectMemberRow> {
    const [row] = await this.t('project_members')
      .insert({ project_id: projectId, user_id: userId, role })
      .onConflict(['project_id', 'user_id'])
      .merge({ role })
      .returning('*');
    return row as ProjectMemberRow;
  }

  /** Removes a project member and the API keys they hold for that project. */
  async removeProjectMember(projectId: string, userId: string): Promise<boolean> {
    return this.knex.transaction(async (trx) => {
      const removed = await this.t('project_members', trx).where({ project_id: projectId, user_id: userId }).delete();
      await this.t('api_keys', trx).where({ project_id: projectId, user_id: userId }).delete();
      return removed > 0;
    });
  }

  // --- API keys --------------------------------------------------------------------------------

  private apiKeys(db: Knex | Knex.Transaction = this.knex): Knex.QueryBuilder {
    return this.t('api_keys', db)
      .leftJoin('organization_members as om', function () {
        this.on('om.organization_id', '=', 'api_keys.organization_id').andOn('om.user_id', '=', 'api_keys.user_id');
      })
      .leftJoin('project_members as pm', function () {
        this.on('pm.project_id', '=', 'api_keys.project_id').andOn('pm.user_id', '=', 'api_keys.user_id');
      })
      .join('users as u', 'u.id', 'api_keys.user_id')
      .select(
        'api_keys.id',
        'api_keys.tenant_id',
        'api_keys.name',
        'api_keys.secret_hint',
        'api_keys.user_id',
        'api_keys.organization_id',
        'api_keys.project_id',
        'api_keys.excluded_from_rate_limiting',
        'api_keys.created_at',
        'om.role as organization_role',
        'pm.role as project_role',
        'u.is_service_account',
      );
  }

  async apiKeyById(id: string): Promise<ApiKeyRow | undefined> {
    return this.apiKeys().where('api_keys.id', id).first();
  }

  listApiKeys(projectId: string, onlyUserId: string | null, page: PageArgs): Promise<Page<ApiKeyRow>> {
    return paginate<ApiKeyRow>(
      () => {
        const q = this.apiKeys().where('api_keys.project_id', projectId);
        return onlyUserId ? q.where('api_keys.user_id', onlyUserId) : q;
      },
      'api_keys',
      page,
    );
  }

  /** Creates a key; returns the row and the secret, which is never stored or shown again. */
  async createApiKey(
    input: {
      name: string;
      userId: string;
      organizationId: string;
      projectId: string;
      excludedFromRateLimiting: boolean;
      secret?: string;
      /** The bootstrap admin key, which a changed MARINER_ADMIN_API_KEY replaces. */
      isBootstrap?: boolean;
    },
    trx: Knex | Knex.Transaction = this.knex,
  ): Promise<{ id: string; secret: string }> {
    const secret = input.secret ?? newApiKeySecret();
    const id = newId('apiKey');
    await this.t('api_keys', trx).insert({
      id,
      tenant_id: DEFAULT_TENANT_ID,
      name: input.name,
      secret_hash: hashSecret(secret),
      secret_hint: obfuscateSecret(secret),
      user_id: input.userId,
      organization_id: input.organizationId,
      project_id: input.projectId,
      excluded_from_rate_limiting: input.excludedFromRateLimiting,
      is_bootstrap: input.isBootstrap ?? false,
    });
    return { id, secret };
  }

  /**
   * A service-account key: a synthetic user with the given organization role and project OWNER,
   * then the key (LLMariner api_keys.go createProjectAPIKey), in one transaction.
   */
  async createServiceAccountKey(input: {
    name: string;
    organizationId: string;
    projectId: string;
    role: OrganizationRole;
    excludedFromRateLimiting: boolean;
  }): Promise<{ id: string; secret: string }> {
    return this.knex.transaction(async (trx) => {
      const userId = `${newId('user')}@serviceaccount.mariner`.toLowerCase();
      await this.ensureUser(userId, trx, true);
      await this.t('organization_members', trx).insert({ organization_id: input.organizationId, user_id: userId, role: input.role });
      await this.t('project_members', trx).insert({ project_id: input.projectId, user_id: userId, role: 'OWNER' });
      return this.createApiKey({ ...input, userId }, trx);
    });
  }

  async updateApiKey(id: string, changes: { name?: string; excludedFromRateLimiting?: boolean }): Promise<void> {
    const patch: Record<string, unknown> = {};
    if (changes.name !== undefined) patch['name'] = changes.name;
    if (changes.excludedFromRateLimiting !== undefined) patch['excluded_from_rate_limiting'] = changes.excludedFromRateLimiting;
    if (Object.keys(patch).length) await this.t('api_keys').where({ id }).update(patch);
  }

  /** Deletes a key; a service account's synthetic user goes with its key. */
  async deleteApiKey(id: string): Promise<boolean> {
    return this.knex.transaction(async (trx) => {
      const key = await this.t('api_keys', trx).where({ id }).first('user_id');
      if (!key) return false;
      await this.t('api_keys', trx).where({ id }).delete();
      // A service account's synthetic user goes with its last key, not with any of them (a notebook's
      // key made by a service account is a second key of that user).
      const left = await this.t('api_keys', trx).where({ user_id: key.user_id }).first('id');
      if (!left) await this.t('users', trx).where({ id: key.user_id, is_service_account: true }).delete();
      return true;
    });
  }

  // --- principals (gateway authentication) -----------------------------------------------------

  /** The principal behind an API key secret: two queries (key with its user, then memberships). */
  async principalByApiKey(secret: string): Promise<Principal | null> {
    const key = (await this.t('api_keys')
      .join('users as u', 'u.id', 'api_keys.user_id')
      .where('api_keys.secret_hash', hashSecret(secret))
      .first(
        'api_keys.id',
        'api_keys.organization_id',
        'api_keys.project_id',
        'api_keys.excluded_from_rate_limiting',
        'u.id as user_id',
        'u.internal_id',
        'u.tenant_id',
        'u.is_service_account',
      )) as (UserRow & { id: string; user_id: string; organization_id: string; project_id: string; excluded_from_rate_limiting: boolean }) | undefined;
    if (!key) return null;
    const principal = await this.principalFor({ ...key, id: key.user_id });
    principal.apiKey = {
      id: key.id,
      organizationId: key.organization_id,
      projectId: key.project_id,
      excludedFromRateLimiting: key.excluded_from_rate_limiting,
    };
    return principal;
  }

  async principalByUser(userId: string): Promise<Principal | null> {
    const user = (await this.t('users').where({ id: userId }).first()) as UserRow | undefined;
    return user ? this.principalFor(user) : null;
  }

  /**
   * A user's memberships, in one query. Organization owners hold every project of their
   * organizations: those projects are listed with role OWNER when the user has no explicit role.
   */
  private async principalFor(user: Pick<UserRow, 'id' | 'internal_id' | 'tenant_id' | 'is_service_account'>): Promise<Principal> {
    const result = await this.knex.raw(
      `select 'organization' as kind, o.id, o.id as organization_id, o.is_default, m.role, m.created_at
         from ?? m join ?? o on o.id = m.organization_id
        where m.user_id = ?
       union all
       select 'project' as kind, p.id, p.organization_id, p.is_default, coalesce(pm.role, 'OWNER') as role, p.created_at
         from ?? p
         join ?? om on om.organization_id = p.organization_id and om.user_id = ?
         left join ?? pm on pm.project_id = p.id and pm.user_id = ?
        where pm.user_id is not null or om.role = 'OWNER'
       order by created_at, id`,
      [
        `${SCHEMA}.organization_members`,
        `${SCHEMA}.organizations`,
        user.id,
        `${SCHEMA}.projects`,
        `${SCHEMA}.organization_members`,
        user.id,
        `${SCHEMA}.project_members`,
        user.id,
      ],
    );
    const rows = result.rows as { kind: string; id: string; organization_id: string; is_default: boolean; role: string }[];
    return {
      userId: user.id,
      internalUserId: user.internal_id,
      tenantId: user.tenant_id,
      isServiceAccount: user.is_service_account,
      apiKey: null,
      organizations: rows
        .filter((r) => r.kind === 'organization')
        .map((r) => ({ organizationId: r.id, role: r.role as OrganizationRole, isDefault: r.is_default })),
      projects: rows
        .filter((r) => r.kind === 'project')
        .map((r) => ({ projectId: r.id, organizationId: r.organization_id, role: r.role as ProjectRole, isDefault: r.is_default })),
    };
  }

  // --- bootstrap -------------------------------------------------------------------------------

  /**
   * First start: the default organization and project (namespace `default`), the admin user as owner of
   * both, and an admin key: the given one, or a generated one that is returned once. The bootstrap key is
   * marked as such: when a later start is given another fixed key, that key replaces it (the previous
   * one is revoked: a rotated MARINER_ADMIN_API_KEY must not leave the old secret working). A later
   * start without a fixed key changes no key (removing the setting must not lock the admin out).
   */
  async bootstrap(options: { adminEmail: string; adminApiKey?: string | undefined }): Promise<BootstrapResult> {
    return this.knex.transaction(async (trx) => {
      await trx.raw('select pg_advisory_xact_lock(hashtext(?))', ['mariner-users-bootstrap']);
      let org = (await this.t('organizations', trx).where({ tenant_id: DEFAULT_TENANT_ID, is_default: true }).first()) as OrganizationRow | undefined;
      const created = !org;
      let projectId: string;
      if (!org) {
        const orgId = newId('organization');
        projectId = newId('project');
        [org] = (await this.t('organizations', trx)
          .insert({ id: orgId, tenant_id: DEFAULT_TENANT_ID, title: 'Default Organization', is_default: true })
          .returning('*')) as OrganizationRow[];
        const assignments: Assignment[] = [{ clusterId: null, namespace: 'default', kueueQueueName: null, nodeSelector: [] }];
        await this.t('projects', trx).insert({
          id: projectId,
          tenant_id: DEFAULT_TENANT_ID,
          organization_id: orgId,
          title: 'Default Project',
          is_default: true,
          assignments: JSON.stringify(assignments),
        });
        await this.claimNamespaces({ id: projectId, tenant_id: DEFAULT_TENANT_ID }, assignments, trx);
        await this.ensureUser(options.adminEmail, trx);
        await this.t('organization_members', trx).insert({ organization_id: orgId, user_id: options.adminEmail, role: 'OWNER' });
        await this.t('project_members', trx).insert({ project_id: projectId, user_id: options.adminEmail, role: 'OWNER' });
      } else {
        const project = await this.t('projects', trx).where({ organization_id: org.id, is_default: true }).first('id');
        projectId = project.id;
      }
      const namespaceConflicts = await this.unreportedNamespaceConflicts(trx);
      const key = {
        name: 'admin (bootstrap)',
        userId: options.adminEmail,
        organizationId: org!.id,
        projectId,
        excludedFromRateLimiting: true,
        isBootstrap: true,
      };
      const fixed = options.adminApiKey;
      if (fixed) {
        const existing = (await this.t('api_keys', trx)
          .where({ secret_hash: hashSecret(fixed) })
          .first('id')) as { id: string } | undefined;
        let keep = existing?.id;
        if (keep) {
          await this.t('api_keys', trx).where({ id: keep }).update({ is_bootstrap: true });
        } else {
          await this.ensureUser(options.adminEmail, trx);
          keep = (await this.createApiKey({ ...key, secret: fixed }, trx)).id;
        }
        const revoked = await this.t('api_keys', trx).where({ is_bootstrap: true }).whereNot({ id: keep }).delete();
        return { created, revokedPreviousKey: revoked > 0, namespaceConflicts };
      }
      if (!created) return { created, revokedPreviousKey: false, namespaceConflicts };
      const { secret } = await this.createApiKey(key, trx);
      return { created, adminApiKey: secret, revokedPreviousKey: false, namespaceConflicts };
    });
  }
}
