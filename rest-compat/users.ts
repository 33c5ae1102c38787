import type { IncomingMessage } from 'node:http';
import { sendJson } from '../lib/http.js';
import { unixSeconds } from '../lib/unixSeconds.js';
import { RestError } from './errors.js';
import { routeGraphQL, type GatewayClient } from './gatewayClient.js';
import { isJsonObject, readJsonBody, type JsonObject } from './json.js';
import { listParams, toList } from './lists.js';
import type { Handler, Route, RouteContext } from './router.js';

/**
 * LLMariner's user-management REST API (reference/llmariner.md §6; user-manager
 * api/v1/user_manager_service.proto): organizations, projects, their members, API keys and users, as
 * grpc-gateway JSON (snake_case proto names, enums by their proto names, unknown fields ignored).
 * Lists are OpenAI-style list objects paged with `after` / `limit`.
 */

// --- Request fields ---------------------------------------------------------------------------

/** A string field; absent and null read as undefined. */
function optionalString(body: JsonObject, key: string, param = key): string | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw RestError.badRequest(`${param} must be a string`, param);
  return value;
}

function requiredString(body: JsonObject, key: string, param = key): string {
  const value = optionalString(body, key, param);
  if (value === undefined) throw RestError.badRequest(`${param} is required`, param);
  return value;
}

function optionalBoolean(body: JsonObject, key: string, param = key): boolean | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw RestError.badRequest(`${param} must be a boolean`, param);
  return value;
}

/** `include_summary` (grpc-gateway parses query booleans as Go's strconv.ParseBool does). */
function queryBoolean(url: URL, name: string): boolean {
  const value = url.searchParams.get(name);
  if (value === null || value === '') return false;
  if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(value)) return false;
  throw RestError.badRequest(`${name} must be true or false`, name);
}

/** Rewrites the `param` of a REST error thrown by `run` (GraphQL argument names → this route's names). */
async function renamingParam<T>(run: Promise<T>, rename: (param: string) => string): Promise<T> {
  try {
    return await run;
  } catch (error) {
    if (error instanceof RestError && error.param) {
      throw new RestError(error.status, error.message, error.type, rename(error.param), error.code);
    }
    throw error;
  }
}

const renameId = (to: string) => (param: string) => (param === 'id' ? to : param);

// --- Roles ------------------------------------------------------------------------------------

type OrganizationRole = 'OWNER' | 'READER' | 'TENANT_SYSTEM';
type ProjectRole = 'OWNER' | 'MEMBER';

/**
 * Roles are read in LLMariner's proto form (`ORGANIZATION_ROLE_OWNER`, or its enum number, as
 * protojson accepts) and in the short form Mariner's GraphQL uses (`OWNER`), case-insensitively;
 * they are written in the proto form, as LLMariner's grpc-gateway JSON does.
 */
const ROLE_ENUMS = {
  organization: { prefix: 'ORGANIZATION_ROLE_', values: ['OWNER', 'READER', 'TENANT_SYSTEM'] },
  project: { prefix: 'PROJECT_ROLE_', values: ['OWNER', 'MEMBER'] },
} as const;

function parseRole(kind: 'organization', value: unknown, param: string): OrganizationRole | undefined;
function parseRole(kind: 'project', value: unknown, param: string): ProjectRole | undefined;
function parseRole(kind: keyof typeof ROLE_ENUMS, value: unknown, param: string): string | undefined {
  const { prefix, values } = ROLE_ENUMS[kind];
  if (value === undefined || value === null || value === 0) return undefined;
  if (typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= values.length) return values[value - 1];
  if (typeof value === 'string') {
    const name = value.trim().toUpperCase();
    if (name === '' || name === `${prefix}UNSPECIFIED`) return undefined;
    const short = name.startsWith(prefix) ? name.slice(prefix.length) : name;
    if ((values as readonly string[]).includes(short)) return short;
  }
  const accepted = values.map((v) => `${prefix}${v}`).join(', ');
  throw RestError.badRequest(`${param}: ${JSON.stringify(value)?.slice(0, 60)} is not a ${kind} role (expected one of ${accepted})`, param);
}

function requiredRole<K extends 'organization' | 'project'>(kind: K, body: JsonObject, param = 'role') {
  const role = kind === 'organization' ? parseRole('organization', body[param], param) : parseRole('project', body[param], param);
  if (role === undefined) throw RestError.badRequest(`${param} is required`, param);
  return role;
}

const organizationRoleName = (role: OrganizationRole | null) => `ORGANIZATION_ROLE_${role ?? 'UNSPECIFIED'}`;
const projectRoleName = (role: ProjectRole | null) => `PROJECT_ROLE_${role ?? 'UNSPECIFIED'}`;

// --- Field masks ------------------------------------------------------------------------------

const snakeCase = (path: string) => path.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * The update mask of a PATCH: `update_mask` in the body (a comma-separated string, as protojson writes
 * a FieldMask, or `{paths: [...]}`) or in the query (`?update_mask=a,b`, grpc-gateway's form). An
 * absent or empty mask is null: the fields present are updated (AIP-134).
 */
function updateMask(body: JsonObject, url: URL, allowed: readonly string[]): string[] | null {
  const raw = body['update_mask'];
  let paths: string[];
  if (raw === undefined || raw === null) {
    paths = [...url.searchParams.getAll('update_mask'), ...url.searchParams.getAll('update_mask.paths')].flatMap((p) => p.split(','));
  } else if (typeof raw === 'string') {
    paths = raw.split(',');
  } else if (isJsonObject(raw) && Array.isArray(raw['paths']) && raw['paths'].every((p) => typeof p === 'string')) {
    paths = raw['paths'] as string[];
  } else if (Array.isArray(raw) && raw.every((p) => typeof p === 'string')) {
    paths = raw as string[];
  } else {
    throw RestError.badRequest('update_mask must be a comma-separated list of field paths', 'update_mask');
  }
  const normalized = [...new Set(paths.map((p) => snakeCase(p.trim())).filter(Boolean))];
  for (const path of normalized) {
    if (!allowed.includes(path)) {
      throw RestError.badRequest(`update_mask: ${path} cannot be updated (updatable: ${allowed.join(', ')})`, 'update_mask');
    }
  }
  return normalized.length ? normalized : null;
}

/**
 * A PATCH body: `{<resource>: {...}, update_mask}`, or the resource itself with the mask in the query
 * (grpc-gateway's `body: "<resource>"`). Returns the resource, the fields to change and the prefix its
 * fields' params carry. Only masked fields change (absent ones reset to their default, as a FieldMask
 * means); without a mask, the fields present.
 */
function patchRequest(body: JsonObject, url: URL, resourceKey: string, allowed: readonly string[]) {
  const wrapped = body[resourceKey];
  if (wrapped !== undefined && wrapped !== null && !isJsonObject(wrapped)) {
    throw RestError.badRequest(`${resourceKey} must be an object`, resourceKey);
  }
  const resource = isJsonObject(wrapped) ? wrapped : body;
  const prefix = isJsonObject(wrapped) ? `${resourceKey}.` : '';
  const mask = updateMask(body, url, allowed);
  const fields = mask ?? allowed.filter((f) => resource[f] !== undefined && resource[f] !== null);
  if (fields.length === 0) {
    throw RestError.badRequest(`Nothing to update: give update_mask or the fields to change (${allowed.join(', ')})`, 'update_mask');
  }
  return { resource, fields: new Set(fields), prefix };
}

// --- GraphQL shapes and their REST forms ------------------------------------------------------

const ORGANIZATION_FIELDS = 'id title isDefault createdAt';
const ORGANIZATION_SUMMARY = 'summary @include(if: $includeSummary) { projectCount userCount }';

interface GraphQLOrganization {
  id: string;
  title: string;
  isDefault: boolean;
  createdAt: string;
  summary?: { projectCount: number; userCount: number };
}

/** LLMariner Organization (`summary` only when asked for with include_summary). */
function toOrganization(o: GraphQLOrganization) {
  return {
    id: o.id,
    title: o.title,
    created_at: unixSeconds(o.createdAt),
    is_default: o.isDefault,
    ...(o.summary ? { summary: { project_count: o.summary.projectCount, user_count: o.summary.userCount } } : {}),
  };
}

const PROJECT_FIELDS = 'id title organizationId isDefault createdAt assignments { clusterId namespace kueueQueueName nodeSelector { key value } }';
const PROJECT_SUMMARY = 'summary @include(if: $includeSummary) { userCount }';

interface GraphQLAssignment {
  clusterId: string | null;
  namespace: string;
  kueueQueueName: string | null;
  nodeSelector: { key: string; value: string }[];
}

interface GraphQLProject {
  id: string;
  title: string;
  organizationId: string;
  isDefault: boolean;
  createdAt: string;
  assignments: GraphQLAssignment[];
  summary?: { userCount: number };
}

/** LLMariner Project. `kubernetes_namespace` (legacy) is the namespace assigned on every cluster, if any. */
function toProject(p: GraphQLProject) {
  return {
    id: p.id,
    title: p.title,
    organization_id: p.organizationId,
    created_at: unixSeconds(p.createdAt),
    is_default: p.isDefault,
    // Proto strings: empty means unset (an empty cluster_id is every cluster).
    assignments: p.assignments.map((a) => ({
      cluster_id: a.clusterId ?? '',
      namespace: a.namespace,
      kueue_queue_name: a.kueueQueueName ?? '',
      node_selector: a.nodeSelector.map(({ key, value }) => ({ key, value })),
    })),
    kubernetes_namespace: p.assignments.find((a) => a.clusterId === null)?.namespace ?? '',
    ...(p.summary ? { summary: { user_count: p.summary.userCount } } : {}),
  };
}

interface AssignmentInput {
  clusterId: string | null;
  namespace: string;
  kueueQueueName: string | null;
  nodeSelector: { key: string; value: string }[];
}

/** Assignments in LLMariner's JSON form; the subgraph validates the Kubernetes names. */
function assignmentsInput(value: unknown, param: string): AssignmentInput[] {
  if (!Array.isArray(value)) throw RestError.badRequest(`${param} must be an array`, param);
  return value.map((item, i) => {
    const at = `${param}[${i}]`;
    if (!isJsonObject(item)) throw RestError.badRequest(`${at} must be an object`, at);
    const selector = item['node_selector'] ?? [];
    if (!Array.isArray(selector)) throw RestError.badRequest(`${at}.node_selector must be an array`, `${at}.node_selector`);
    return {
      clusterId: optionalString(item, 'cluster_id', `${at}.cluster_id`) || null,
      namespace: requiredString(item, 'namespace', `${at}.namespace`),
      kueueQueueName: optionalString(item, 'kueue_queue_name', `${at}.kueue_queue_name`) || null,
      nodeSelector: selector.map((term, j) => {
        const where = `${at}.node_selector[${j}]`;
        if (!isJsonObject(term)) throw RestError.badRequest(`${where} must be an object`, where);
        return { key: requiredString(term, 'key', `${where}.key`), value: requiredString(term, 'value', `${where}.value`) };
      }),
    };
  });
}

const MEMBER_FIELDS = 'role user { id }';

interface GraphQLMember<Role> {
  role: Role;
  user: { id: string };
}

const USER_FIELDS =
  'id isServiceAccount organizationRoleBindings { role organization { id } } projectRoleBindings { role project { id organizationId } }';

interface GraphQLUser {
  id: string;
  isServiceAccount: boolean;
  organizationRoleBindings: { role: OrganizationRole; organization: { id: string } }[];
  projectRoleBindings: { role: ProjectRole; project: { id: string; organizationId: string } }[];
}

/** LLMariner User with its role bindings (the ones in organizations the caller belongs to). */
function toUser(u: GraphQLUser) {
  return {
    id: u.id,
    is_service_account: u.isServiceAccount,
    organization_role_bindings: u.organizationRoleBindings.map((b) => ({
      organization_id: b.organization.id,
      role: organizationRoleName(b.role),
    })),
    project_role_bindings: u.projectRoleBindings.map((b) => ({
      project_id: b.project.id,
      organization_id: b.project.organizationId,
      role: projectRoleName(b.role),
    })),
  };
}

const API_KEY_FIELDS =
  'id name secret createdAt excludedFromRateLimiting organizationRole projectRole user { id isServiceAccount } organization { id title } project { id title }';

interface GraphQLApiKey {
  id: string;
  name: string;
  /** Obfuscated (first 5 and last 2 characters). */
  secret: string;
  createdAt: string;
  excludedFromRateLimiting: boolean;
  organizationRole: OrganizationRole | null;
  projectRole: ProjectRole | null;
  user: { id: string; isServiceAccount: boolean };
  organization: { id: string; title: string };
  project: { id: string; title: string };
}

/** LLMariner APIKey (user-manager api_keys.go: object `user.api_key`); the full secret only on creation. */
function toApiKey(k: GraphQLApiKey, fullSecret?: string) {
  return {
    id: k.id,
    object: 'user.api_key' as const,
    name: k.name,
    secret: fullSecret ?? k.secret,
    created_at: unixSeconds(k.createdAt),
    user: { id: k.user.id, is_service_account: k.user.isServiceAccount },
    organization: { id: k.organization.id, title: k.organization.title },
    project: { id: k.project.id, title: k.project.title },
    organization_role: organizationRoleName(k.organizationRole),
    project_role: projectRoleName(k.projectRole),
    excluded_from_rate_limiting: k.excludedFromRateLimiting,
  };
}

interface Page<T> {
  items: T[];
  hasMore: boolean;
}

/**
 * `after` / `limit` of a Mariner list. The users subgraph's lists are oldest first and take no order,
 * so `order=desc` is refused rather than ignored.
 */
function pageParams(url: URL) {
  const { after, limit, order } = listParams(url, 'asc');
  if (order !== 'ASC') throw RestError.badRequest('This list is ordered oldest first only (order=asc)', 'order');
  return { after, limit };
}

/** A list whose cursor is not an `id` field (members page by user id). */
function cursorList<T>(data: T[], hasMore: boolean, cursorOf: (item: T) => string) {
  return { object: 'list' as const, data, has_more: hasMore, first_id: data.length ? cursorOf(data[0]!) : '', last_id: data.length ? cursorOf(data.at(-1)!) : '' };
}

// --- Routes -----------------------------------------------------------------------------------

export interface UserRoutesOptions {
  gateway: GatewayClient;
}

/** The user-management routes (LLMariner §6). */
export function userRoutes({ gateway }: UserRoutesOptions): Route[] {
  const gql = routeGraphQL(gateway);

  /** The project of the path, if the caller can see it and it belongs to the path's organization. */
  async function projectInOrganization(req: IncomingMessage, ctx: RouteContext): Promise<{ id: string; organizationId: string }> {
    const { organization_id: organizationId, project_id: projectId } = ctx.params as { organization_id: string; project_id: string };
    const { project } = await renamingParam(
      gql<{ project: { id: string; organizationId: string } | null }>(req, ctx, `query Project($id: ID!) { project(id: $id) { id organizationId } }`, { id: projectId }),
      renameId('project_id'),
    );
    if (!project || project.organizationId !== organizationId) throw RestError.notFound(`No such project ${projectId} in organization ${organizationId}`);
    return project;
  }

  // Organizations ------------------------------------------------------------------------------

  /** POST /v1/organizations (only owners of the default organization). */
  const createOrganization: Handler = async (req, res, ctx) => {
    const body = await readJsonBody(req);
    const title = requiredString(body, 'title');
    const { createOrganization: org } = await gql<{ createOrganization: GraphQLOrganization }>(
      req,
      ctx,
      `mutation CreateOrganization($input: CreateOrganizationInput!) { createOrganization(input: $input) { ${ORGANIZATION_FIELDS} } }`,
      { input: { title } },
    );
    sendJson(res, 200, toOrganization(org), ctx.headers);
  };

  /** GET /v1/organizations[?include_summary=true]. */
  const listOrganizations: Handler = async (req, res, ctx) => {
    const page = pageParams(ctx.url);
    const includeSummary = queryBoolean(ctx.url, 'include_summary');
    const { organizations } = await gql<{ organizations: Page<GraphQLOrganization> }>(
      req,
      ctx,
      `query ListOrganizations($after: String, $limit: Int, $includeSummary: Boolean!) { organizations(after: $after, limit: $limit) { items { ${ORGANIZATION_FIELDS} ${ORGANIZATION_SUMMARY} } hasMore } }`,
      { ...page, includeSummary },
    );
    sendJson(res, 200, toList(organizations.items.map(toOrganization), organizations.hasMore), ctx.headers);
  };

  /** DELETE /v1/organizations/{organization_id} (not the default organization). */
  const deleteOrganization: Handler = async (req, res, ctx) => {
    const id = ctx.params['organization_id']!;
    await renamingParam(gql(req, ctx, `mutation DeleteOrganization($id: ID!) { deleteOrganization(id: $id) { deleted } }`, { id }), renameId('organization_id'));
    sendJson(res, 200, { id, object: 'organization', deleted: true }, ctx.headers);
  };

  // Organization members -----------------------------------------------------------------------

  /** POST /v1/organizations/{organization_id}/users: adds (or re-roles) a user, by email. */
  const addOrganizationMember: Handler = async (req, res, ctx) => {
    const organizationId = ctx.params['organization_id']!;
    const body = await readJsonBody(req);
    const userId = requiredString(body, 'user_id');
    const role = requiredRole('organization', body);
    const { addOrganizationMember: member } = await gql<{ addOrganizationMember: GraphQLMember<OrganizationRole> }>(
      req,
      ctx,
      `mutation AddOrganizationMember($organizationId: ID!, $userId: ID!, $role: OrganizationRole!) { addOrganizationMember(organizationId: $organizationId, userId: $userId, role: $role) { ${MEMBER_FIELDS} } }`,
      { organizationId, userId, role },
    );
    sendJson(res, 200, { user_id: member.user.id, organization_id: organizationId, role: organizationRoleName(member.role) }, ctx.headers);
  };

  /** GET /v1/organizations/{organization_id}/users (organization owners). */
  const listOrganizationMembers: Handler = async (req, res, ctx) => {
    const organizationId = ctx.params['organization_id']!;
    const page = pageParams(ctx.url);
    const { organization } = await renamingParam(
      gql<{ organization: { members: Page<GraphQLMember<OrganizationRole>> } | null }>(
        req,
        ctx,
        `query OrganizationMembers($id: ID!, $after: String, $limit: Int) { organization(id: $id) { members(after: $after, limit: $limit) { items { ${MEMBER_FIELDS} } hasMore } } }`,
        { id: organizationId, ...page },
      ),
      renameId('organization_id'),
    );
    if (!organization) throw RestError.notFound(`No such organization: ${organizationId}`);
    const data = organization.members.items.map((m) => ({ user_id: m.user.id, organization_id: organizationId, role: organizationRoleName(m.role) }));
    sendJson(res, 200, cursorList(data, organization.members.hasMore, (m) => m.user_id), ctx.headers);
  };

  /** DELETE /v1/organizations/{organization_id}/users/{user_id}: answers `{}` (google.protobuf.Empty), as LLMariner does. */
  const removeOrganizationMember: Handler = async (req, res, ctx) => {
    const { organization_id: organizationId, user_id: userId } = ctx.params as { organization_id: string; user_id: string };
    await gql(
      req,
      ctx,
      `mutation RemoveOrganizationMember($organizationId: ID!, $userId: ID!) { removeOrganizationMember(organizationId: $organizationId, userId: $userId) { deleted } }`,
      { organizationId, userId },
    );
    sendJson(res, 200, {}, ctx.headers);
  };

  // Projects -----------------------------------------------------------------------------------

  /** POST /v1/organizations/{organization_id}/projects: `kubernetes_namespace` (legacy) or `assignments`. */
  const createProject: Handler = async (req, res, ctx) => {
    const organizationId = ctx.params['organization_id']!;
    const body = await readJsonBody(req);
    const title = requiredString(body, 'title');
    const namespace = optionalString(body, 'kubernetes_namespace');
    // Proto defaults: an empty string or an empty list is unset.
    const assignments = body['assignments'] == null ? [] : assignmentsInput(body['assignments'], 'assignments');
    if (namespace && assignments.length) {
      throw RestError.badRequest('Give kubernetes_namespace or assignments, not both', 'kubernetes_namespace');
    }
    const input = {
      organizationId,
      title,
      // Neither: Mariner assigns the namespace named after the title.
      ...(namespace ? { assignments: [{ clusterId: null, namespace, kueueQueueName: null, nodeSelector: [] }] } : {}),
      ...(assignments.length ? { assignments } : {}),
    };
    const { createProject: project } = await renamingParam(
      gql<{ createProject: GraphQLProject }>(req, ctx, `mutation CreateProject($input: CreateProjectInput!) { createProject(input: $input) { ${PROJECT_FIELDS} } }`, { input }),
      (param) => (namespace && param.startsWith('assignments') ? 'kubernetes_namespace' : param),
    );
    sendJson(res, 200, toProject(project), ctx.headers);
  };

  /** GET /v1/organizations/{organization_id}/projects[?include_summary=true]: the projects the caller can see. */
  const listProjects: Handler = async (req, res, ctx) => {
    const organizationId = ctx.params['organization_id']!;
    const page = pageParams(ctx.url);
    const includeSummary = queryBoolean(ctx.url, 'include_summary');
    const { projects } = await gql<{ projects: Page<GraphQLProject> }>(
      req,
      ctx,
      `query ListProjects($organizationId: ID!, $after: String, $limit: Int, $includeSummary: Boolean!) { projects(organizationId: $organizationId, after: $after, limit: $limit) { items { ${PROJECT_FIELDS} ${PROJECT_SUMMARY} } hasMore } }`,
      { organizationId, ...page, includeSummary },
    );
    sendJson(res, 200, toList(projects.items.map(toProject), projects.hasMore), ctx.headers);
  };

  /** DELETE /v1/organizations/{organization_id}/projects/{project_id} (not the default project). */
  const deleteProject: Handler = async (req, res, ctx) => {
    const project = await projectInOrganization(req, ctx);
    await gql(req, ctx, `mutation DeleteProject($id: ID!) { deleteProject(id: $id) { deleted } }`, { id: project.id });
    sendJson(res, 200, { id: project.id, object: 'project', deleted: true }, ctx.headers);
  };

  /** PATCH /v1/organizations/{organization_id}/projects/{project_id}: `title` and `assignments`, by field mask. */
  const updateProject: Handler = async (req, res, ctx) => {
    const body = await readJsonBody(req);
    const { resource, fields, prefix } = patchRequest(body, ctx.url, 'project', ['title', 'assignments']);
    const input: Record<string, unknown> = {};
    // A masked field absent from the body is reset to its default, which the subgraph refuses for both.
    if (fields.has('title')) input['title'] = optionalString(resource, 'title', `${prefix}title`) ?? '';
    if (fields.has('assignments')) {
      input['assignments'] = resource['assignments'] == null ? [] : assignmentsInput(resource['assignments'], `${prefix}assignments`);
    }
    const project = await projectInOrganization(req, ctx);
    const { updateProject: updated } = await renamingParam(
      gql<{ updateProject: GraphQLProject }>(req, ctx, `mutation UpdateProject($input: UpdateProjectInput!) { updateProject(input: $input) { ${PROJECT_FIELDS} } }`, {
        input: { id: project.id, ...input },
      }),
      (param) => (param === 'id' ? 'project_id' : `${prefix}${param}`),
    );
    sendJson(res, 200, toProject(updated), ctx.headers);
  };

  // Project members ----------------------------------------------------------------------------

  /** POST /v1/organizations/{organization_id}/projects/{project_id}/users (the user must be in the organization). */
  const addProjectMember: Handler = async (req, res, ctx) => {
    const body = await readJsonBody(req);
    const userId = requiredString(body, 'user_id');
    const role = requiredRole('project', body);
    const project = await projectInOrganization(req, ctx);
    const { addProjectMember: member } = await gql<{ addProjectMember: GraphQLMember<ProjectRole> }>(
      req,
      ctx,
      `mutation AddProjectMember($projectId: ID!, $userId: ID!, $role: ProjectRole!) { addProjectMember(projectId: $projectId, userId: $userId, role: $role) { ${MEMBER_FIELDS} } }`,
      { projectId: project.id, userId, role },
    );
    sendJson(
      res,
      200,
      { user_id: member.user.id, project_id: project.id, organization_id: project.organizationId, role: projectRoleName(member.role) },
      ctx.headers,
    );
  };

  /** GET /v1/organizations/{organization_id}/projects/{project_id}/users. */
  const listProjectMembers: Handler = async (req, res, ctx) => {
    const { organization_id: organizationId, project_id: projectId } = ctx.params as { organization_id: string; project_id: string };
    const page = pageParams(ctx.url);
    const { project } = await renamingParam(
      gql<{ project: { organizationId: string; members: Page<GraphQLMember<ProjectRole>> } | null }>(
        req,
        ctx,
        `query ProjectMembers($id: ID!, $after: String, $limit: Int) { project(id: $id) { organizationId members(after: $after, limit: $limit) { items { ${MEMBER_FIELDS} } hasMore } } }`,
        { id: projectId, ...page },
      ),
      renameId('project_id'),
    );
    if (!project || project.organizationId !== organizationId) throw RestError.notFound(`No such project ${projectId} in organization ${organizationId}`);
    const data = project.members.items.map((m) => ({
      user_id: m.user.id,
      project_id: projectId,
      organization_id: organizationId,
      role: projectRoleName(m.role),
    }));
    sendJson(res, 200, cursorList(data, project.members.hasMore, (m) => m.user_id), ctx.headers);
  };

  /** DELETE /v1/organizations/{organization_id}/projects/{project_id}/users/{user_id}: answers `{}` (google.protobuf.Empty). */
  const removeProjectMember: Handler = async (req, res, ctx) => {
    const project = await projectInOrganization(req, ctx);
    await gql(
      req,
      ctx,
      `mutation RemoveProjectMember($projectId: ID!, $userId: ID!) { removeProjectMember(projectId: $projectId, userId: $userId) { deleted } }`,
      { projectId: project.id, userId: ctx.params['user_id']! },
    );
    sendJson(res, 200, {}, ctx.headers);
  };

  // API keys -----------------------------------------------------------------------------------

  /**
   * POST /v1/api_keys: the only answer that carries the full secret. `project_id` defaults to the
   * caller's current project; `organization_id`, if given, must be the project's.
   */
  const createApiKey: Handler = async (req, res, ctx) => {
    const body = await readJsonBody(req);
    const name = requiredString(body, 'name');
    const projectId = optionalString(body, 'project_id') || undefined;
    const organizationId = optionalString(body, 'organization_id') || undefined;
    const isServiceAccount = optionalBoolean(body, 'is_service_account');
    const role = parseRole('organization', body['role'], 'role');
    const excludedFromRateLimiting = optionalBoolean(body, 'excluded_from_rate_limiting');
    if (organizationId) {
      if (!projectId) throw RestError.badRequest('project_id is required with organization_id', 'project_id');
      await projectInOrganization(req, { ...ctx, params: { organization_id: organizationId, project_id: projectId } });
    }
    const { createApiKey: created } = await gql<{ createApiKey: { secret: string; apiKey: GraphQLApiKey } }>(
      req,
      ctx,
      `mutation CreateApiKey($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { ${API_KEY_FIELDS} } } }`,
      { input: { name, projectId, isServiceAccount, role, excludedFromRateLimiting } },
    );
    sendJson(res, 200, toApiKey(created.apiKey, created.secret), ctx.headers);
  };

  /** GET /v1/api_keys: the current project's keys (owners see all, others their own), secrets obfuscated. */
  const listApiKeys: Handler = async (req, res, ctx) => {
    const page = pageParams(ctx.url);
    const { apiKeys } = await gql<{ apiKeys: Page<GraphQLApiKey> }>(
      req,
      ctx,
      `query ListApiKeys($after: String, $limit: Int) { apiKeys(after: $after, limit: $limit) { items { ${API_KEY_FIELDS} } hasMore } }`,
      page,
    );
    sendJson(res, 200, toList(apiKeys.items.map((k) => toApiKey(k)), apiKeys.hasMore), ctx.headers);
  };

  /** DELETE /v1/api_keys/{id}; the object name is LLMariner's (api_keys.go DeleteAPIKey). */
  const deleteApiKey: Handler = async (req, res, ctx) => {
    const id = ctx.params['id']!;
    await gql(req, ctx, `mutation DeleteApiKey($id: ID!) { deleteApiKey(id: $id) { deleted } }`, { id });
    sendJson(res, 200, { id, object: 'users.api_key', deleted: true }, ctx.headers);
  };

  /** PATCH /v1/api_keys/{id}: `name` and `excluded_from_rate_limiting` (organization owners), by field mask. */
  const updateApiKey: Handler = async (req, res, ctx) => {
    const body = await readJsonBody(req);
    const { resource, fields, prefix } = patchRequest(body, ctx.url, 'api_key', ['name', 'excluded_from_rate_limiting']);
    const input: Record<string, unknown> = { id: ctx.params['id']! };
    if (fields.has('name')) input['name'] = optionalString(resource, 'name', `${prefix}name`) ?? '';
    if (fields.has('excluded_from_rate_limiting')) {
      input['excludedFromRateLimiting'] = optionalBoolean(resource, 'excluded_from_rate_limiting', `${prefix}excluded_from_rate_limiting`) ?? false;
    }
    const { updateApiKey: key } = await renamingParam(
      gql<{ updateApiKey: GraphQLApiKey }>(req, ctx, `mutation UpdateApiKey($input: UpdateApiKeyInput!) { updateApiKey(input: $input) { ${API_KEY_FIELDS} } }`, { input }),
      (param) => (param === 'id' ? param : `${prefix}${param}`),
    );
    sendJson(res, 200, toApiKey(key), ctx.headers);
  };

  // Users --------------------------------------------------------------------------------------

  /** GET /v1/users:getSelf: the caller with its role bindings. */
  const getSelf: Handler = async (req, res, ctx) => {
    const { self } = await gql<{ self: GraphQLUser }>(req, ctx, `query Self { self { ${USER_FIELDS} } }`);
    sendJson(res, 200, toUser(self), ctx.headers);
  };

  /** GET /v1/users: the users of the organizations the caller owns. */
  const listUsers: Handler = async (req, res, ctx) => {
    const page = pageParams(ctx.url);
    const { users } = await gql<{ users: Page<GraphQLUser> }>(
      req,
      ctx,
      `query ListUsers($after: String, $limit: Int) { users(after: $after, limit: $limit) { items { ${USER_FIELDS} } hasMore } }`,
      page,
    );
    sendJson(res, 200, toList(users.items.map(toUser), users.hasMore), ctx.headers);
  };

  return [
    { method: 'POST', path: '/v1/organizations', handler: createOrganization },
    { method: 'GET', path: '/v1/organizations', handler: listOrganizations },
    { method: 'DELETE', path: '/v1/organizations/:organization_id', handler: deleteOrganization },
    { method: 'POST', path: '/v1/organizations/:organization_id/users', handler: addOrganizationMember },
    { method: 'GET', path: '/v1/organizations/:organization_id/users', handler: listOrganizationMembers },
    { method: 'DELETE', path: '/v1/organizations/:organization_id/users/:user_id', handler: removeOrganizationMember },
    { method: 'POST', path: '/v1/organizations/:organization_id/projects', handler: createProject },
    { method: 'GET', path: '/v1/organizations/:organization_id/projects', handler: listProjects },
    { method: 'DELETE', path: '/v1/organizations/:organization_id/projects/:project_id', handler: deleteProject },
    { method: 'PATCH', path: '/v1/organizations/:organization_id/projects/:project_id', handler: updateProject },
    { method: 'POST', path: '/v1/organizations/:organization_id/projects/:project_id/users', handler: addProjectMember },
    { method: 'GET', path: '/v1/organizations/:organization_id/projects/:project_id/users', handler: listProjectMembers },
    { method: 'DELETE', path: '/v1/organizations/:organization_id/projects/:project_id/users/:user_id', handler: removeProjectMember },
    { method: 'POST', path: '/v1/api_keys', handler: createApiKey },
    { method: 'GET', path: '/v1/api_keys', handler: listApiKeys },
    { method: 'DELETE', path: '/v1/api_keys/:id', handler: deleteApiKey },
    { method: 'PATCH', path: '/v1/api_keys/:id', handler: updateApiKey },
    // `users:getSelf` is one literal segment: router parameters are whole segments that start with ':'.
    { method: 'GET', path: '/v1/users:getSelf', handler: getSelf },
    { method: 'GET', path: '/v1/users', handler: listUsers },
  ];
}
