import { sendJson } from '../lib/http.js';
import { RestError } from './errors.js';
import { routeGraphQL, type GatewayClient } from './gatewayClient.js';
import { renameId, renamingParam, requiredString } from './grpcGateway.js';
import { readJsonBody } from './json.js';
import { strictBody } from './strictBody.js';
import { cursorList, oldestFirstListParams, type GraphQLPage } from './lists.js';
import { projectInOrganization } from './projects.js';
import { organizationRoleName, projectRoleName, requiredRole, type OrganizationRole, type ProjectRole } from './roles.js';
import type { Handler, Route } from './router.js';

/**
 * LLMariner's organization and project members (user-manager api/v1 `CreateOrganizationUser`,
 * `ListOrganizationUsers`, `DeleteOrganizationUser` and their project counterparts), as grpc-gateway
 * JSON: a user and its role. Member lists page by user id.
 */

const MEMBER_FIELDS = 'role user { id }';

interface GraphQLMember<Role> {
  role: Role;
  user: { id: string };
}

/** The organization member routes (LLMariner §6). */
export function organizationMemberRoutes({ gateway }: { gateway: GatewayClient }): Route[] {
  const gql = routeGraphQL(gateway);

  /** POST /v1/organizations/{organization_id}/users: adds (or re-roles) a user, by email. */
  const addOrganizationMember: Handler = async (req, res, ctx) => {
    const organizationId = ctx.params['organization_id']!;
    const body = strictBody(await readJsonBody(req), { user_id: null, role: null });
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
    const page = oldestFirstListParams(ctx.url);
    const { organization } = await renamingParam(
      gql<{ organization: { members: GraphQLPage<GraphQLMember<OrganizationRole>> } | null }>(
        req,
        ctx,
        `query OrganizationMembers($id: ID!, $after: String, $limit: Int) { organization(id: $id) { members(after: $after, limit: $limit) { items { ${MEMBER_FIELDS} } hasMore } } }`,
        { id: organizationId, ...page },
      ),
      renameId('organization_id'),
    );
    if (!organization) throw RestError.notFound(`No such organization: ${organizationId}`);
    const data = organization.members.items.map((m) => ({ user_id: m.user.id, organization_id: organizationId, role: organizationRoleName(m.role) }));
    sendJson(
      res,
      200,
      cursorList(data, organization.members.hasMore, (m) => m.user_id),
      ctx.headers,
    );
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

  return [
    { method: 'POST', path: '/v1/organizations/:organization_id/users', handler: addOrganizationMember },
    { method: 'GET', path: '/v1/organizations/:organization_id/users', handler: listOrganizationMembers },
    { method: 'DELETE', path: '/v1/organizations/:organization_id/users/:user_id', handler: removeOrganizationMember },
  ];
}

/** The project member routes (LLMariner §6). */
export function projectMemberRoutes({ gateway }: { gateway: GatewayClient }): Route[] {
  const gql = routeGraphQL(gateway);

  /** POST /v1/organizations/{organization_id}/projects/{project_id}/users (the user must be in the organization). */
  const addProjectMember: Handler = async (req, res, ctx) => {
    const body = strictBody(await readJsonBody(req), { user_id: null, role: null });
    const userId = requiredString(body, 'user_id');
    const role = requiredRole('project', body);
    const project = await projectInOrganization(gql, req, ctx);
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
    const page = oldestFirstListParams(ctx.url);
    const { project } = await renamingParam(
      gql<{ project: { organizationId: string; members: GraphQLPage<GraphQLMember<ProjectRole>> } | null }>(
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
    sendJson(
      res,
      200,
      cursorList(data, project.members.hasMore, (m) => m.user_id),
      ctx.headers,
    );
  };

  /** DELETE /v1/organizations/{organization_id}/projects/{project_id}/users/{user_id}: answers `{}` (google.protobuf.Empty). */
  const removeProjectMember: Handler = async (req, res, ctx) => {
    const project = await projectInOrganization(gql, req, ctx);
    await gql(
      req,
      ctx,
      `mutation RemoveProjectMember($projectId: ID!, $userId: ID!) { removeProjectMember(projectId: $projectId, userId: $userId) { deleted } }`,
      { projectId: project.id, userId: ctx.params['user_id']! },
    );
    sendJson(res, 200, {}, ctx.headers);
  };

  return [
    { method: 'POST', path: '/v1/organizations/:organization_id/projects/:project_id/users', handler: addProjectMember },
    { method: 'GET', path: '/v1/organizations/:organization_id/projects/:project_id/users', handler: listProjectMembers },
    { method: 'DELETE', path: '/v1/organizations/:organization_id/projects/:project_id/users/:user_id', handler: removeProjectMember },
  ];
}
