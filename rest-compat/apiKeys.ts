import type { IncomingMessage } from 'node:http';
import { sendJson } from '../lib/http.js';
import { unixSeconds } from '../lib/unixSeconds.js';
import { RestError } from './errors.js';
import { routeGraphQL, type GatewayClient } from './gatewayClient.js';
import { optionalBoolean, optionalString, patchRequest, renamingParam, requiredString } from './grpcGateway.js';
import { readJsonBody } from './json.js';
import { strictBody } from './strictBody.js';
import { oldestFirstListParams, toList, type GraphQLPage } from './lists.js';
import { projectInOrganization } from './projects.js';
import { organizationRoleName, parseRole, projectRoleName, type OrganizationRole, type ProjectRole } from './roles.js';
import type { Handler, Route, RouteContext } from './router.js';

/**
 * LLMariner's API keys (user-manager api/v1 `CreateAPIKey`, `ListAPIKeys`, `DeleteAPIKey`,
 * `UpdateAPIKey`), as grpc-gateway JSON: the full secret only in the create answer, obfuscated after.
 */

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

/** The API key routes (LLMariner §6). */
export function apiKeyRoutes({ gateway }: { gateway: GatewayClient }): Route[] {
  const gql = routeGraphQL(gateway);

  /**
   * POST /v1/api_keys: the only answer that carries the full secret. `project_id` defaults to the
   * caller's current project; `organization_id`, if given, must be the project's.
   */
  const createApiKey: Handler = async (req, res, ctx) => {
    // LLMariner CreateAPIKeyRequest.
    const body = strictBody(await readJsonBody(req), {
      name: null,
      project_id: null,
      organization_id: null,
      is_service_account: null,
      role: null,
      excluded_from_rate_limiting: null,
    });
    const name = requiredString(body, 'name');
    const projectId = optionalString(body, 'project_id') || undefined;
    const organizationId = optionalString(body, 'organization_id') || undefined;
    const isServiceAccount = optionalBoolean(body, 'is_service_account');
    const role = parseRole('organization', body['role'], 'role');
    const excludedFromRateLimiting = optionalBoolean(body, 'excluded_from_rate_limiting');
    if (organizationId) {
      if (!projectId) throw RestError.badRequest('project_id is required with organization_id', 'project_id');
      await projectInOrganization(gql, req, { ...ctx, params: { organization_id: organizationId, project_id: projectId } });
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
    const page = oldestFirstListParams(ctx.url);
    const { apiKeys } = await gql<{ apiKeys: GraphQLPage<GraphQLApiKey> }>(
      req,
      ctx,
      `query ListApiKeys($after: String, $limit: Int) { apiKeys(after: $after, limit: $limit) { items { ${API_KEY_FIELDS} } hasMore } }`,
      page,
    );
    sendJson(
      res,
      200,
      toList(
        apiKeys.items.map((k) => toApiKey(k)),
        apiKeys.hasMore,
      ),
      ctx.headers,
    );
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
      gql<{ updateApiKey: GraphQLApiKey }>(
        req,
        ctx,
        `mutation UpdateApiKey($input: UpdateApiKeyInput!) { updateApiKey(input: $input) { ${API_KEY_FIELDS} } }`,
        { input },
      ),
      (param) => (param === 'id' ? param : `${prefix}${param}`),
    );
    sendJson(res, 200, toApiKey(key), ctx.headers);
  };

  /**
   * LLMariner's project routes (user-manager `CreateAPIKey`, `ListAPIKeys`, `DeleteAPIKey` under
   * `/v1/organizations/{organization_id}/projects/{project_id}/api_keys`, as `llma auth api-keys` calls
   * them): the project in the path is the one the gateway resolves (as `OpenAI-Organization` and
   * `OpenAI-Project` select it), so the caller's role there decides, and a key bound to another project
   * is refused.
   */
  const inPathProject = (req: IncomingMessage, ctx: RouteContext): IncomingMessage =>
    // The request as the gateway client reads it (its headers), with the path's project selected.
    Object.assign(Object.create(req) as IncomingMessage, {
      headers: { ...req.headers, 'openai-organization': ctx.params['organization_id']!, 'openai-project': ctx.params['project_id']! },
    });

  const createProjectApiKey: Handler = async (req, res, ctx) => {
    // LLMariner's project-scoped CreateAPIKey body.
    const body = strictBody(await readJsonBody(req), { name: null, is_service_account: null, role: null, excluded_from_rate_limiting: null });
    const name = requiredString(body, 'name');
    const isServiceAccount = optionalBoolean(body, 'is_service_account');
    const role = parseRole('organization', body['role'], 'role');
    const excludedFromRateLimiting = optionalBoolean(body, 'excluded_from_rate_limiting');
    const scoped = inPathProject(req, ctx);
    await projectInOrganization(gql, scoped, ctx);
    const { createApiKey: created } = await gql<{ createApiKey: { secret: string; apiKey: GraphQLApiKey } }>(
      scoped,
      ctx,
      `mutation CreateApiKey($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { ${API_KEY_FIELDS} } } }`,
      { input: { name, projectId: ctx.params['project_id']!, isServiceAccount, role, excludedFromRateLimiting } },
    );
    sendJson(res, 200, toApiKey(created.apiKey, created.secret), ctx.headers);
  };

  /** Every page of the path project's keys the caller may see. */
  const projectKeys = async (req: IncomingMessage, ctx: RouteContext): Promise<GraphQLApiKey[]> => {
    const scoped = inPathProject(req, ctx);
    await projectInOrganization(gql, scoped, ctx);
    const keys: GraphQLApiKey[] = [];
    let after: string | null = null;
    for (;;) {
      const { apiKeys }: { apiKeys: GraphQLPage<GraphQLApiKey> } = await gql(
        scoped,
        ctx,
        `query ListApiKeys($after: String, $limit: Int) { apiKeys(after: $after, limit: $limit) { items { ${API_KEY_FIELDS} } hasMore } }`,
        { after, limit: 100 },
      );
      keys.push(...apiKeys.items.filter((k) => k.project.id === ctx.params['project_id']));
      if (!apiKeys.hasMore || apiKeys.items.length === 0) return keys;
      after = apiKeys.items.at(-1)!.id;
    }
  };

  /** LLMariner's ListAPIKeysResponse is not paginated: `{object: "list", data}`, every key of the project. */
  const listProjectApiKeys: Handler = async (req, res, ctx) => {
    const keys = await projectKeys(req, ctx);
    sendJson(res, 200, { object: 'list', data: keys.map((k) => toApiKey(k)) }, ctx.headers);
  };

  /** Only a key of the path's project (one the caller may see there): any other id is 404. */
  const deleteProjectApiKey: Handler = async (req, res, ctx) => {
    const id = ctx.params['id']!;
    if (!(await projectKeys(req, ctx)).some((k) => k.id === id)) throw RestError.notFound(`No API key ${id} in project ${ctx.params['project_id']}`);
    await gql(inPathProject(req, ctx), ctx, `mutation DeleteApiKey($id: ID!) { deleteApiKey(id: $id) { deleted } }`, { id });
    sendJson(res, 200, { id, object: 'users.api_key', deleted: true }, ctx.headers);
  };

  const projectPath = '/v1/organizations/:organization_id/projects/:project_id/api_keys';
  return [
    { method: 'POST', path: projectPath, handler: createProjectApiKey },
    { method: 'GET', path: projectPath, handler: listProjectApiKeys },
    { method: 'DELETE', path: `${projectPath}/:id`, handler: deleteProjectApiKey },
    { method: 'POST', path: '/v1/api_keys', handler: createApiKey },
    { method: 'GET', path: '/v1/api_keys', handler: listApiKeys },
    { method: 'DELETE', path: '/v1/api_keys/:id', handler: deleteApiKey },
    { method: 'PATCH', path: '/v1/api_keys/:id', handler: updateApiKey },
  ];
}
