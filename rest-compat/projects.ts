import type { IncomingMessage } from 'node:http';
import { sendJson } from '../lib/http.js';
import { unixSeconds } from '../lib/unixSeconds.js';
import { RestError } from './errors.js';
import { routeGraphQL, type GatewayClient, type RouteGraphQL } from './gatewayClient.js';
import { optionalString, patchRequest, queryBoolean, renameId, renamingParam, requiredString } from './grpcGateway.js';
import { isJsonObject, readJsonBody } from './json.js';
import { strictBody } from './strictBody.js';
import { oldestFirstListParams, toList, type GraphQLPage } from './lists.js';
import type { Handler, Route, RouteContext } from './router.js';

/**
 * LLMariner's projects (user-manager api/v1 `CreateProject`, `ListProjects`, `DeleteProject`,
 * `UpdateProject`), as grpc-gateway JSON, with their assignments (cluster, namespace, Kueue queue,
 * node selector). Their members are members.ts's.
 */

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
  return value.map((_, i) => {
    const at = `${param}[${i}]`;
    if (!isJsonObject(value[i])) throw RestError.badRequest(`${at} must be an object`, at);
    // LLMariner ProjectAssignment.
    const item = strictBody(value[i] as Record<string, unknown>, { cluster_id: null, namespace: null, kueue_queue_name: null, node_selector: null }, at);
    const selector = item['node_selector'] ?? [];
    if (!Array.isArray(selector)) throw RestError.badRequest(`${at}.node_selector must be an array`, `${at}.node_selector`);
    return {
      clusterId: optionalString(item, 'cluster_id', `${at}.cluster_id`) || null,
      namespace: requiredString(item, 'namespace', `${at}.namespace`),
      kueueQueueName: optionalString(item, 'kueue_queue_name', `${at}.kueue_queue_name`) || null,
      nodeSelector: selector.map((term, j) => {
        const where = `${at}.node_selector[${j}]`;
        if (!isJsonObject(term)) throw RestError.badRequest(`${where} must be an object`, where);
        strictBody(term, { key: null, value: null }, where);
        return { key: requiredString(term, 'key', `${where}.key`), value: requiredString(term, 'value', `${where}.value`) };
      }),
    };
  });
}

/** The project of the path, if the caller can see it and it belongs to the path's organization. */
export async function projectInOrganization(gql: RouteGraphQL, req: IncomingMessage, ctx: RouteContext): Promise<{ id: string; organizationId: string }> {
  const { organization_id: organizationId, project_id: projectId } = ctx.params as { organization_id: string; project_id: string };
  const { project } = await renamingParam(
    gql<{ project: { id: string; organizationId: string } | null }>(req, ctx, `query Project($id: ID!) { project(id: $id) { id organizationId } }`, {
      id: projectId,
    }),
    renameId('project_id'),
  );
  if (!project || project.organizationId !== organizationId) throw RestError.notFound(`No such project ${projectId} in organization ${organizationId}`);
  return project;
}

/** The project routes (LLMariner §6). */
export function projectRoutes({ gateway }: { gateway: GatewayClient }): Route[] {
  const gql = routeGraphQL(gateway);

  /** POST /v1/organizations/{organization_id}/projects: `kubernetes_namespace` (legacy) or `assignments`. */
  const createProject: Handler = async (req, res, ctx) => {
    const organizationId = ctx.params['organization_id']!;
    // LLMariner CreateProjectRequest (each assignment's fields are checked by assignmentsInput).
    const body = strictBody(await readJsonBody(req), { title: null, kubernetes_namespace: null, assignments: null });
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
      gql<{ createProject: GraphQLProject }>(
        req,
        ctx,
        `mutation CreateProject($input: CreateProjectInput!) { createProject(input: $input) { ${PROJECT_FIELDS} } }`,
        { input },
      ),
      (param) => (namespace && param.startsWith('assignments') ? 'kubernetes_namespace' : param),
    );
    sendJson(res, 200, toProject(project), ctx.headers);
  };

  /** GET /v1/organizations/{organization_id}/projects[?include_summary=true]: the projects the caller can see. */
  const listProjects: Handler = async (req, res, ctx) => {
    const organizationId = ctx.params['organization_id']!;
    const page = oldestFirstListParams(ctx.url);
    const includeSummary = queryBoolean(ctx.url, 'include_summary');
    const { projects } = await gql<{ projects: GraphQLPage<GraphQLProject> }>(
      req,
      ctx,
      `query ListProjects($organizationId: ID!, $after: String, $limit: Int, $includeSummary: Boolean!) { projects(organizationId: $organizationId, after: $after, limit: $limit) { items { ${PROJECT_FIELDS} ${PROJECT_SUMMARY} } hasMore } }`,
      { organizationId, ...page, includeSummary },
    );
    sendJson(res, 200, toList(projects.items.map(toProject), projects.hasMore), ctx.headers);
  };

  /** DELETE /v1/organizations/{organization_id}/projects/{project_id} (not the default project). */
  const deleteProject: Handler = async (req, res, ctx) => {
    const project = await projectInOrganization(gql, req, ctx);
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
    const project = await projectInOrganization(gql, req, ctx);
    const { updateProject: updated } = await renamingParam(
      gql<{ updateProject: GraphQLProject }>(
        req,
        ctx,
        `mutation UpdateProject($input: UpdateProjectInput!) { updateProject(input: $input) { ${PROJECT_FIELDS} } }`,
        {
          input: { id: project.id, ...input },
        },
      ),
      (param) => (param === 'id' ? 'project_id' : `${prefix}${param}`),
    );
    sendJson(res, 200, toProject(updated), ctx.headers);
  };

  return [
    { method: 'POST', path: '/v1/organizations/:organization_id/projects', handler: createProject },
    { method: 'GET', path: '/v1/organizations/:organization_id/projects', handler: listProjects },
    { method: 'DELETE', path: '/v1/organizations/:organization_id/projects/:project_id', handler: deleteProject },
    { method: 'PATCH', path: '/v1/organizations/:organization_id/projects/:project_id', handler: updateProject },
  ];
}
