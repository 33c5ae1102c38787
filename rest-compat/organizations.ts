import { sendJson } from '../lib/http.js';
import { unixSeconds } from '../lib/unixSeconds.js';
import { routeGraphQL, type GatewayClient } from './gatewayClient.js';
import { queryBoolean, renameId, renamingParam, requiredString } from './grpcGateway.js';
import { readJsonBody } from './json.js';
import { strictBody } from './strictBody.js';
import { oldestFirstListParams, toList, type GraphQLPage } from './lists.js';
import type { Handler, Route } from './router.js';

/**
 * LLMariner's organizations (user-manager api/v1 `CreateOrganization`, `ListOrganizations`,
 * `DeleteOrganization`), as grpc-gateway JSON. Their members are members.ts's.
 */

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

/** The organization routes (LLMariner §6). */
export function organizationRoutes({ gateway }: { gateway: GatewayClient }): Route[] {
  const gql = routeGraphQL(gateway);

  /** POST /v1/organizations (only owners of the default organization). */
  const createOrganization: Handler = async (req, res, ctx) => {
    const body = strictBody(await readJsonBody(req), { title: null });
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
    const page = oldestFirstListParams(ctx.url);
    const includeSummary = queryBoolean(ctx.url, 'include_summary');
    const { organizations } = await gql<{ organizations: GraphQLPage<GraphQLOrganization> }>(
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
    await renamingParam(
      gql(req, ctx, `mutation DeleteOrganization($id: ID!) { deleteOrganization(id: $id) { deleted } }`, { id }),
      renameId('organization_id'),
    );
    sendJson(res, 200, { id, object: 'organization', deleted: true }, ctx.headers);
  };

  return [
    { method: 'POST', path: '/v1/organizations', handler: createOrganization },
    { method: 'GET', path: '/v1/organizations', handler: listOrganizations },
    { method: 'DELETE', path: '/v1/organizations/:organization_id', handler: deleteOrganization },
  ];
}
