import { sendJson } from '../lib/http.js';
import { apiKeyRoutes } from './apiKeys.js';
import { routeGraphQL, type GatewayClient } from './gatewayClient.js';
import { oldestFirstListParams, toList, type GraphQLPage } from './lists.js';
import { organizationMemberRoutes, projectMemberRoutes } from './members.js';
import { organizationRoutes } from './organizations.js';
import { projectRoutes } from './projects.js';
import { organizationRoleName, projectRoleName, type OrganizationRole, type ProjectRole } from './roles.js';
import type { Handler, Route } from './router.js';

/**
 * LLMariner's user-management REST API (reference/llmariner.md §6; user-manager
 * api/v1/user_manager_service.proto): organizations, projects, their members, API keys and users, as
 * grpc-gateway JSON (snake_case proto names, enums by their proto names, unknown fields ignored; read by
 * grpcGateway.ts). Lists are OpenAI-style list objects paged with `after` / `limit`. One file per
 * resource: organizations.ts, projects.ts, members.ts, apiKeys.ts; the users themselves here.
 */

const USER_FIELDS = 'id isServiceAccount organizationRoleBindings { role organization { id } } projectRoleBindings { role project { id organizationId } }';

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

export interface UserRoutesOptions {
  gateway: GatewayClient;
}

/** The user-management routes (LLMariner §6). */
export function userRoutes({ gateway }: UserRoutesOptions): Route[] {
  const gql = routeGraphQL(gateway);

  /** GET /v1/users:getSelf: the caller with its role bindings. */
  const getSelf: Handler = async (req, res, ctx) => {
    const { self } = await gql<{ self: GraphQLUser }>(req, ctx, `query Self { self { ${USER_FIELDS} } }`);
    sendJson(res, 200, toUser(self), ctx.headers);
  };

  /** GET /v1/users: the users of the organizations the caller owns. */
  const listUsers: Handler = async (req, res, ctx) => {
    const page = oldestFirstListParams(ctx.url);
    const { users } = await gql<{ users: GraphQLPage<GraphQLUser> }>(
      req,
      ctx,
      `query ListUsers($after: String, $limit: Int) { users(after: $after, limit: $limit) { items { ${USER_FIELDS} } hasMore } }`,
      page,
    );
    sendJson(res, 200, toList(users.items.map(toUser), users.hasMore), ctx.headers);
  };

  return [
    ...organizationRoutes({ gateway }),
    ...organizationMemberRoutes({ gateway }),
    ...projectRoutes({ gateway }),
    ...projectMemberRoutes({ gateway }),
    ...apiKeyRoutes({ gateway }),
    // `users:getSelf` is one literal segment: router parameters are whole segments that start with ':'.
    { method: 'GET', path: '/v1/users:getSelf', handler: getSelf },
    { method: 'GET', path: '/v1/users', handler: listUsers },
  ];
}
