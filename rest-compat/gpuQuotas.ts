import { sendJson } from '../lib/http.js';
import { unixSeconds } from '../lib/unixSeconds.js';
import { RestError } from './errors.js';
import { routeGraphQL, type GatewayClient } from './gatewayClient.js';
import { optionalString, requiredString } from './grpcGateway.js';
import { readJsonBody } from './json.js';
import { projectInOrganization } from './projects.js';
import type { Handler, Route } from './router.js';
import { strictBody } from './strictBody.js';

/**
 * A project's GPU quotas (issue 22, docs/quotas.md), the GraphQL `projectGpuQuotas`,
 * `setProjectGpuQuota` and `removeProjectGpuQuota` in the JSON style of the project routes:
 * - `GET    /v1/organizations/{organization_id}/projects/{project_id}/gpu_quotas`: the quotas with usage;
 * - `PUT    /v1/organizations/{organization_id}/projects/{project_id}/gpu_quotas`: sets one (organization owners),
 *   body `{cluster_id, resource?, flavor?, nominal_gpus, borrowing_allowed?}`, answers it;
 * - `DELETE /v1/organizations/{organization_id}/projects/{project_id}/gpu_quotas?cluster_id=&resource=&flavor=`:
 *   removes one, answers `{removed}`.
 */

const QUOTA_FIELDS =
  'projectId clusterId resource flavor nominalGpus borrowingAllowed usedGpus waitingJobs { jobId namespace message position } usageReportedAt updatedAt';

interface GraphQLQuota {
  projectId: string;
  clusterId: string;
  resource: string;
  flavor: string | null;
  nominalGpus: number;
  borrowingAllowed: boolean;
  usedGpus: number | null;
  waitingJobs: { jobId: string; namespace: string; message: string; position: number | null }[];
  usageReportedAt: string | null;
  updatedAt: string;
}

function toQuota(q: GraphQLQuota) {
  return {
    object: 'project.gpu_quota',
    project_id: q.projectId,
    cluster_id: q.clusterId,
    resource: q.resource,
    flavor: q.flavor,
    nominal_gpus: q.nominalGpus,
    borrowing_allowed: q.borrowingAllowed,
    used_gpus: q.usedGpus,
    waiting_jobs: q.waitingJobs.map((w) => ({ job_id: w.jobId, namespace: w.namespace, message: w.message, position: w.position })),
    usage_reported_at: unixSeconds(q.usageReportedAt, null),
    updated_at: unixSeconds(q.updatedAt),
  };
}

export function gpuQuotaRoutes({ gateway }: { gateway: GatewayClient }): Route[] {
  const gql = routeGraphQL(gateway);
  const path = '/v1/organizations/:organization_id/projects/:project_id/gpu_quotas';

  const list: Handler = async (req, res, ctx) => {
    const project = await projectInOrganization(gql, req, ctx);
    const data = await gql<{ projectGpuQuotas: GraphQLQuota[] }>(
      req,
      ctx,
      `query ProjectGpuQuotas($projectId: ID!) { projectGpuQuotas(projectId: $projectId) { ${QUOTA_FIELDS} } }`,
      { projectId: project.id },
    );
    sendJson(res, 200, { object: 'list', data: data.projectGpuQuotas.map(toQuota) }, ctx.headers);
  };

  const set: Handler = async (req, res, ctx) => {
    const project = await projectInOrganization(gql, req, ctx);
    const body = strictBody(await readJsonBody(req), { cluster_id: null, resource: null, flavor: null, nominal_gpus: null, borrowing_allowed: null });
    const nominal = body['nominal_gpus'];
    if (typeof nominal !== 'number' || !Number.isInteger(nominal)) throw RestError.badRequest('nominal_gpus must be a whole number', 'nominal_gpus');
    const borrowing = body['borrowing_allowed'];
    if (borrowing != null && typeof borrowing !== 'boolean') throw RestError.badRequest('borrowing_allowed must be true or false', 'borrowing_allowed');
    const input = {
      projectId: project.id,
      clusterId: requiredString(body, 'cluster_id'),
      resource: optionalString(body, 'resource') || null,
      flavor: optionalString(body, 'flavor') || null,
      nominalGpus: nominal,
      borrowingAllowed: borrowing ?? null,
    };
    const data = await gql<{ setProjectGpuQuota: GraphQLQuota }>(
      req,
      ctx,
      `mutation SetProjectGpuQuota($input: SetProjectGpuQuotaInput!) { setProjectGpuQuota(input: $input) { ${QUOTA_FIELDS} } }`,
      { input },
    );
    sendJson(res, 200, toQuota(data.setProjectGpuQuota), ctx.headers);
  };

  const remove: Handler = async (req, res, ctx) => {
    const project = await projectInOrganization(gql, req, ctx);
    const clusterId = ctx.url.searchParams.get('cluster_id');
    if (!clusterId) throw RestError.badRequest('cluster_id is required', 'cluster_id');
    const input = {
      projectId: project.id,
      clusterId,
      resource: ctx.url.searchParams.get('resource') || null,
      flavor: ctx.url.searchParams.get('flavor') || null,
    };
    const data = await gql<{ removeProjectGpuQuota: { removed: boolean } }>(
      req,
      ctx,
      `mutation RemoveProjectGpuQuota($input: RemoveProjectGpuQuotaInput!) { removeProjectGpuQuota(input: $input) { removed } }`,
      { input },
    );
    sendJson(res, 200, { removed: data.removeProjectGpuQuota.removed }, ctx.headers);
  };

  return [
    { method: 'GET', path, handler: list },
    { method: 'PUT', path, handler: set },
    { method: 'DELETE', path, handler: remove },
  ];
}
