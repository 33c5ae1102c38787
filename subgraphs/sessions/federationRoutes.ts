import type { IncomingMessage, ServerResponse } from 'node:http';
import http2, { type ClientHttp2Stream } from 'node:http2';
import YAML from 'yaml';
import { BodyTooLargeError, readBody, requestIdOf } from '../../lib/http.js';
import { randomString } from '../../lib/ids.js';
import type { Logger } from '../../lib/logging.js';
import { agentRoutes } from '../../lib/agentContract.js';
import { kubernetesStatus } from '../../lib/tunnel.js';
import { refusedKubeRequest } from './kubeAllowList.js';
import { federatedJobManifest, ManifestRefusal } from './federationManifest.js';
import {
  CLUSTER_ANNOTATION,
  FEDERATED_LABEL,
  gpusOfJob,
  jobsPath,
  kubeCall,
  MESSAGE_ANNOTATION,
  STATE_ANNOTATION,
  type FederationCluster,
  type FederationPlacer,
  type FederationTransport,
} from './federationPlacement.js';
import type { FederatedJob, FederationStore, KubeObject } from './federationStore.js';
import type { SessionAudit } from './sessionAudit.js';
import { credentialOf, MISSING_CREDENTIAL, SessionsError, type Decision, type SessionAuthorizer } from './sessionAuth.js';
import { checkedRequestPath, forwardableHeaders, KUBE_REQUEST_HEADERS, responseHeaders } from './tunnelRelay.js';
import { NoTunnelError } from './tunnelRegistry.js';

/**
 * The virtual cluster `federated` (issue 22, GPU federation): `/v1/sessions/federated/<Kubernetes API path>`,
 * a Kubernetes API endpoint of its own, usable by kubectl like any cluster's `/v1/sessions/<cluster id>`. It
 * serves batch/v1 Jobs in the caller's project namespaces: create, get, list, delete, and the logs of their
 * pods. Each Job is checked (federationManifest.ts), recorded (federationStore.ts), and placed on one cluster
 * of the project's assignments for that namespace with its GPUs free (federationPlacement.ts); a GET reads
 * the real Job from that cluster, so its status is the cluster's; a delete deletes it there. The caller needs
 * `api.fine_tuning.jobs.read` (reads) or `.write` (create, delete) and the namespace assigned to their project,
 * as on `/v1/sessions/<cluster id>`.
 */
export const FEDERATED_CLUSTER = 'federated';
export const FEDERATED_PREFIX = `/v1/sessions/${FEDERATED_CLUSTER}`;

export interface FederationRoutesOptions {
  store: FederationStore;
  placer: FederationPlacer;
  transport: FederationTransport;
  authorizer: SessionAuthorizer;
  schedulingClusters(requestId: string, tenantId: string, organizationId: string): Promise<FederationCluster[]>;
  audit?: SessionAudit | undefined;
  logger: Logger;
}

const MAX_BODY_BYTES = 1024 * 1024;

/** The discovery documents kubectl reads first: what this endpoint serves, and nothing else. */
const DISCOVERY: Record<string, unknown> = {
  '/version': { major: '1', minor: '35', gitVersion: 'v1.35.0-mariner-federated', platform: 'linux/amd64' },
  '/api': { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [] },
  '/api/v1': {
    kind: 'APIResourceList',
    groupVersion: 'v1',
    resources: [
      { name: 'pods', singularName: 'pod', namespaced: true, kind: 'Pod', verbs: ['get', 'list'], shortNames: ['po'] },
      { name: 'pods/log', singularName: '', namespaced: true, kind: 'Pod', verbs: ['get'] },
      { name: 'events', singularName: 'event', namespaced: true, kind: 'Event', verbs: ['list'], shortNames: ['ev'] },
    ],
  },
  '/apis': {
    kind: 'APIGroupList',
    apiVersion: 'v1',
    groups: [{ name: 'batch', versions: [{ groupVersion: 'batch/v1', version: 'v1' }], preferredVersion: { groupVersion: 'batch/v1', version: 'v1' } }],
  },
  /**
   * OpenAPI v3, only what kubectl asks before it sends a Job (kubectl apply/create, validation "strict"):
   * whether the server validates fields itself (the `fieldValidation` parameter of the Job's PATCH, which
   * is where kubectl looks for it). It does: every Job is checked with no unknown field allowed
   * (federationManifest.ts), so kubectl skips its own schema download.
   */
  '/openapi/v3': { paths: { 'apis/batch/v1': { serverRelativeURL: '/openapi/v3/apis/batch/v1?hash=federated-1' } } },
  '/openapi/v3/apis/batch/v1': {
    openapi: '3.0.0',
    info: { title: 'Mariner federated cluster', version: 'v1' },
    paths: {
      '/apis/batch/v1/namespaces/{namespace}/jobs/{name}': {
        patch: {
          'x-kubernetes-group-version-kind': { group: 'batch', version: 'v1', kind: 'Job' },
          parameters: [{ name: 'fieldValidation', in: 'query', schema: { type: 'string', uniqueItems: true } }],
          responses: {},
        },
      },
    },
  },
  '/apis/batch/v1': {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion: 'batch/v1',
    resources: [
      { name: 'jobs', singularName: 'job', namespaced: true, kind: 'Job', verbs: ['create', 'delete', 'get', 'list'], categories: ['all'] },
      { name: 'jobs/status', singularName: '', namespaced: true, kind: 'Job', verbs: ['get'] },
    ],
  },
};

/** A parsed federated path: which resource, in which namespace, which object. */
type Route =
  | { kind: 'discovery'; document: unknown }
  | { kind: 'jobs'; namespace: string; name: string | undefined; subresource: string | undefined }
  | { kind: 'pods' | 'events'; namespace: string; name: string | undefined; subresource: string | undefined };

function routeOf(segments: string[]): Route | null {
  const path = `/${segments.join('/')}`;
  if (path in DISCOVERY) return { kind: 'discovery', document: DISCOVERY[path] };
  // /apis/batch/v1/namespaces/<ns>/jobs[/<name>[/status]]
  if (segments[0] === 'apis' && segments[1] === 'batch' && segments[2] === 'v1' && segments[3] === 'namespaces') {
    const [, , , , namespace, resource, name, subresource, ...more] = segments;
    if (namespace && resource === 'jobs' && more.length === 0 && (subresource === undefined || subresource === 'status')) {
      return { kind: 'jobs', namespace, name, subresource };
    }
    return null;
  }
  // /api/v1/namespaces/<ns>/pods[/<name>[/log]], /api/v1/namespaces/<ns>/events
  if (segments[0] === 'api' && segments[1] === 'v1' && segments[2] === 'namespaces') {
    const [, , , namespace, resource, name, subresource, ...more] = segments;
    if (!namespace || more.length > 0) return null;
    if (resource === 'pods' && (subresource === undefined || subresource === 'log')) return { kind: 'pods', namespace, name, subresource };
    if (resource === 'events' && name === undefined) return { kind: 'events', namespace, name: undefined, subresource: undefined };
  }
  return null;
}

const listOf = (kind: 'PodList' | 'EventList', items: KubeObject[]) => ({ kind, apiVersion: 'v1', metadata: { resourceVersion: '' }, items });

const notFound = (resource: 'jobs' | 'pods', name: string) =>
  Object.assign(kubernetesStatus(404, `${resource === 'jobs' ? 'jobs.batch' : 'pods'} "${name}" not found`, 'NotFound'), {
    details: { name, ...(resource === 'jobs' ? { group: 'batch' } : {}), kind: resource },
  });

export function createFederationRoutes(options: FederationRoutesOptions) {
  const { store, placer, transport, authorizer, logger } = options;

  function send(res: ServerResponse, status: number, body: unknown, requestId: string): void {
    res.writeHead(status, { 'content-type': 'application/json', 'x-request-id': requestId, ...(status === 401 ? { 'www-authenticate': 'Bearer' } : {}) });
    res.end(JSON.stringify(body));
  }

  function fail(res: ServerResponse, error: unknown, requestId: string): void {
    if (res.headersSent) return void res.destroy();
    if (error instanceof ManifestRefusal) return send(res, error.code, error.status, requestId);
    if (error instanceof BodyTooLargeError) return send(res, 413, kubernetesStatus(413, 'the Job is larger than 1 MiB', 'RequestEntityTooLarge'), requestId);
    const status = error instanceof SessionsError ? error.status : error instanceof NoTunnelError ? 503 : 502;
    if (status === 502) logger.error({ err: error, requestId }, 'federated Kubernetes endpoint failed');
    const message =
      error instanceof SessionsError || error instanceof NoTunnelError ? error.message : `The federated endpoint failed (request id ${requestId})`;
    send(res, status, kubernetesStatus(status, message), requestId);
  }

  /** The caller's decision and the clusters their project has the namespace assigned on (null: any the organization may use). */
  async function admitNamespace(decision: Decision, namespace: string): Promise<(string | null)[]> {
    if (!decision.authorized) throw new SessionsError(403, `Forbidden: ${decision.reason ?? 'missing api.fine_tuning.jobs'}`);
    if (!decision.organizationId || !decision.projectId)
      throw new SessionsError(403, 'Forbidden: the federated cluster serves a project: pick one (OpenAI-Project)');
    const clusters = (decision.project?.assignments ?? []).filter((a) => a.namespace === namespace).map((a) => a.clusterId);
    if (clusters.length === 0) throw new SessionsError(403, `Forbidden: namespace "${namespace}" is not assigned to your project`);
    return [...new Set(clusters)];
  }

  /** What the endpoint shows of a Job: the real one from its cluster, or the submitted one while it waits. */
  async function viewOf(job: FederatedJob, requestId: string): Promise<KubeObject | null> {
    const annotate = (object: KubeObject, state: string, message: string | null): KubeObject => ({
      ...object,
      metadata: {
        ...object.metadata,
        annotations: {
          ...((object.metadata?.['annotations'] as Record<string, string> | undefined) ?? {}),
          [STATE_ANNOTATION]: state,
          ...(job.clusterId ? { [CLUSTER_ANNOTATION]: job.clusterId } : {}),
          ...(message ? { [MESSAGE_ANNOTATION]: message } : {}),
        },
      },
    });
    if (job.clusterId) {
      try {
        const answer = await kubeCall(transport, job.clusterId, 'GET', `${jobsPath(job.namespace)}/${encodeURIComponent(job.name)}`, undefined, { requestId });
        if (answer.status === 200) return annotate(answer.body, 'Placed', null);
        if (answer.status === 404) {
          // Deleted on its cluster (by hand, or its ttlSecondsAfterFinished): gone here too.
          await store.remove(job.id);
          return null;
        }
        return annotate(stored(job), 'Unknown', `cluster ${job.clusterId} answered ${answer.status}`);
      } catch {
        return annotate(stored(job), 'Unknown', `cluster ${job.clusterId} cannot be reached now`);
      }
    }
    return annotate(stored(job), 'Pending', job.message);
  }

  const stored = (job: FederatedJob): KubeObject => ({
    ...job.manifest,
    metadata: { ...job.manifest.metadata, uid: job.uid ?? job.id, creationTimestamp: job.createdAt.toISOString(), resourceVersion: '1' },
    status: {},
  });

  /** Waiting Jobs of the namespace get a try now (a cluster may have reported room since the last pass). */
  async function placeWaiting(jobs: FederatedJob[], requestId: string): Promise<FederatedJob[]> {
    return Promise.all(
      jobs.map(async (job) => {
        if (job.clusterId) return job;
        const outcome = await placer.place(job, requestId);
        return outcome.kind === 'placed' || outcome.kind === 'waiting' ? outcome.job : job;
      }),
    );
  }

  async function handleJobs(
    req: IncomingMessage,
    res: ServerResponse,
    route: Extract<Route, { kind: 'jobs' }>,
    decision: Decision,
    method: string,
    query: URLSearchParams,
    requestId: string,
  ) {
    const assignedClusters = await admitNamespace(decision, route.namespace);
    const projectId = decision.projectId!;
    if (query.get('watch') === 'true' || query.get('watch') === '1')
      throw new SessionsError(405, 'the federated cluster does not serve watches: get the Jobs again');
    if (query.has('dryRun')) throw new SessionsError(400, 'the federated cluster does not serve dry runs');
    if (route.name === undefined) {
      if (method === 'GET') {
        const jobs = await placeWaiting(await store.list(projectId, route.namespace), requestId);
        const items = (await Promise.all(jobs.map((job) => viewOf(job, requestId)))).filter((j): j is KubeObject => j !== null);
        return send(res, 200, { kind: 'JobList', apiVersion: 'batch/v1', metadata: { resourceVersion: '' }, items }, requestId);
      }
      if (method !== 'POST') throw new SessionsError(405, `the federated cluster does not serve ${method} on a collection of Jobs`);
      const text = await readBody(req, MAX_BODY_BYTES);
      const contentType = String(req.headers['content-type'] ?? 'application/json');
      if (!/json|yaml/.test(contentType)) {
        return send(res, 415, kubernetesStatus(415, `the federated cluster takes JSON or YAML, not ${contentType}`, 'UnsupportedMediaType'), requestId);
      }
      let body: unknown;
      try {
        body = YAML.parse(text);
      } catch (error) {
        throw new ManifestRefusal(400, 'BadRequest', `the body does not parse: ${(error as Error).message}`);
      }
      const id = `fj-${randomString(20)}`;
      const manifest = federatedJobManifest(body, route.namespace, id);
      const name = String(manifest.metadata!['name']);
      const job = await store.insert({
        id,
        tenantId: decision.tenantId,
        organizationId: decision.organizationId!,
        projectId,
        namespace: route.namespace,
        name,
        gpus: gpusOfJob(manifest),
        manifest,
        assignedClusters,
      });
      if (!job)
        return send(
          res,
          409,
          Object.assign(kubernetesStatus(409, `jobs.batch "${name}" already exists`, 'AlreadyExists'), { details: { name, group: 'batch', kind: 'jobs' } }),
          requestId,
        );
      const outcome = await placer.place(job, requestId, { removeOnRefusal: true });
      auditWrite(
        req,
        decision,
        outcome.kind === 'placed' ? outcome.job.clusterId! : FEDERATED_CLUSTER,
        method,
        `${jobsPath(route.namespace)}/${name}`,
        requestId,
      );
      if (outcome.kind === 'refused') return send(res, outcome.status, outcome.body, requestId);
      if (outcome.kind === 'gone') return send(res, 404, notFound('jobs', name), requestId);
      const view = await viewOf(outcome.job, requestId);
      return send(res, 201, view ?? stored(outcome.job), requestId);
    }
    const job = await store.get(projectId, route.namespace, route.name);
    if (!job) return send(res, 404, notFound('jobs', route.name), requestId);
    if (method === 'GET') {
      const [current] = await placeWaiting([job], requestId);
      const view = await viewOf(current!, requestId);
      return view ? send(res, 200, view, requestId) : send(res, 404, notFound('jobs', route.name), requestId);
    }
    if (method !== 'DELETE' || route.subresource !== undefined)
      throw new SessionsError(405, `the federated cluster does not serve ${method} on a Job (delete it and create it again)`);
    auditWrite(req, decision, job.clusterId ?? FEDERATED_CLUSTER, method, `${jobsPath(route.namespace)}/${job.name}`, requestId);
    req.resume();
    const view = (await viewOf(job, requestId)) ?? stored(job);
    if (job.clusterId) {
      try {
        const answer = await kubeCall(
          transport,
          job.clusterId,
          'DELETE',
          `${jobsPath(job.namespace)}/${encodeURIComponent(job.name)}`,
          { kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: 'Background' },
          { requestId },
        );
        if (answer.status >= 400 && answer.status !== 404) return send(res, answer.status, answer.body, requestId);
      } catch (error) {
        // A cluster the organization may no longer use (unregistered): nothing is left to delete there.
        const clusters = await options.schedulingClusters(requestId, job.tenantId, job.organizationId);
        if (clusters.some((c) => c.id === job.clusterId))
          throw error instanceof NoTunnelError ? error : new SessionsError(503, `cluster ${job.clusterId} cannot be reached now: try again`);
      }
    }
    await store.remove(job.id);
    return send(res, 200, view, requestId);
  }

  async function handlePods(
    req: IncomingMessage,
    res: ServerResponse,
    route: Extract<Route, { kind: 'pods' | 'events' }>,
    decision: Decision,
    method: string,
    path: string,
    query: URLSearchParams,
    requestId: string,
  ) {
    const assignedClusters = await admitNamespace(decision, route.namespace);
    if (method !== 'GET') throw new SessionsError(405, `the federated cluster serves reads of ${route.kind} only, not ${method}`);
    if (query.get('watch') === 'true' || query.get('watch') === '1')
      throw new SessionsError(405, `the federated cluster does not serve watches of ${route.kind}`);
    const jobs = (await store.list(decision.projectId!, route.namespace)).filter(
      (j) => j.clusterId && assignedClusters.some((c) => c === null || c === j.clusterId),
    );
    const listKind = route.kind === 'pods' ? 'PodList' : 'EventList';
    let job: FederatedJob | undefined;
    if (route.name === undefined) {
      // The objects of one Job: its pods by the labels the Job controller sets (kubectl logs job/<name> lists them by
      // its selector), its and its pods' events by the object they are about (kubectl describe).
      const terms = (selector: string | null) =>
        new Map(
          (selector ?? '')
            .split(',')
            .map((term) => term.split(/==?/).map((t) => t.trim()))
            .filter((kv) => kv.length === 2) as [string, string][],
        );
      const labels = terms(query.get('labelSelector'));
      const fields = terms(query.get('fieldSelector'));
      const name = route.kind === 'pods' ? (labels.get('job-name') ?? labels.get('batch.kubernetes.io/job-name')) : undefined;
      const uid = route.kind === 'pods' ? (labels.get('controller-uid') ?? labels.get('batch.kubernetes.io/controller-uid')) : fields.get('involvedObject.uid');
      const about = route.kind === 'events' ? fields.get('involvedObject.name') : undefined;
      job = jobs.find(
        (j) =>
          (name !== undefined && j.name === name) ||
          (uid !== undefined && j.uid === uid) ||
          (about !== undefined && (about === j.name || about.startsWith(`${j.name}-`))),
      );
      if (!job) {
        if (name !== undefined || uid !== undefined || about !== undefined) return send(res, 200, listOf(listKind, []), requestId);
        // Every federated Job's pods (or the namespace's events) from each cluster that runs one (the pods carry the federation's label).
        const params = new URLSearchParams(query);
        if (route.kind === 'pods') params.set('labelSelector', [FEDERATED_LABEL, query.get('labelSelector')].filter(Boolean).join(','));
        const items: KubeObject[] = [];
        for (const clusterId of new Set(jobs.map((j) => j.clusterId!))) {
          const listPath = `/api/v1/namespaces/${encodeURIComponent(route.namespace)}/${route.kind}?${params.toString()}`;
          const answer = await kubeCall(transport, clusterId, 'GET', listPath, undefined, { requestId }).catch(() => null);
          if (answer?.status === 200 && Array.isArray(answer.body['items'])) items.push(...(answer.body['items'] as KubeObject[]));
        }
        return send(res, 200, listOf(listKind, items), requestId);
      }
    } else {
      // A Job's pods are named <job>-<suffix>: the longest Job name that prefixes the pod's.
      const podName = route.name;
      job = jobs.filter((j) => podName.startsWith(`${j.name}-`)).sort((a, b) => b.name.length - a.name.length)[0];
      if (!job) return send(res, 404, notFound('pods', podName), requestId);
    }
    const refused = refusedKubeRequest(path, method, { allowExec: false });
    if (refused) throw new SessionsError(403, refused);
    const stream: ClientHttp2Stream = transport.request(
      job.clusterId!,
      {
        ...forwardableHeaders(req.headers, { allow: KUBE_REQUEST_HEADERS, upgrade: false }),
        ':method': 'GET',
        ':path': agentRoutes.kubernetes(path),
        'x-request-id': requestId,
      },
      { endStream: true },
    );
    req.resume();
    stream.on('response', (headers) => {
      res.writeHead(Number(headers[':status'] ?? 502), { ...responseHeaders(headers), 'x-request-id': requestId });
      res.flushHeaders();
      stream.pipe(res);
    });
    stream.on('error', (error) => fail(res, error, requestId));
    res.on('close', () => {
      if (!stream.closed && !stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
    });
  }

  function auditWrite(req: IncomingMessage, decision: Decision, clusterId: string, method: string, path: string, requestId: string): void {
    options.audit?.({
      requestId,
      userId: decision.userId,
      organizationId: decision.organizationId,
      projectId: decision.projectId,
      clientAddress: req.socket.remoteAddress ?? null,
      clusterId,
      method,
      path,
      upgrade: false,
    });
  }

  return {
    handles(pathname: string): boolean {
      return pathname === FEDERATED_PREFIX || pathname.startsWith(`${FEDERATED_PREFIX}/`);
    },

    async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
      const requestId = requestIdOf(req);
      const method = (req.method ?? 'GET').toUpperCase();
      try {
        const credential = credentialOf(req.headers);
        if (!credential) throw new SessionsError(401, MISSING_CREDENTIAL);
        const write = !(method === 'GET' || method === 'HEAD');
        const decision = await authorizer.decide(credential, 'api.fine_tuning.jobs', write ? 'WRITE' : 'READ', requestId);
        const checked = checkedRequestPath(req.url ?? '/');
        const segments = checked.segments.slice(3);
        const path = `/${segments.map(encodeURIComponent).join('/')}${checked.query}`;
        const query = new URLSearchParams(checked.query.replace(/^\?/, ''));
        const route = routeOf(segments);
        if (!route)
          throw new SessionsError(404, `the federated cluster serves batch/v1 Jobs and their pods' logs only, not ${`/${segments.join('/')}`.slice(0, 200)}`);
        if (route.kind === 'discovery') {
          if (!decision.authorized) throw new SessionsError(403, `Forbidden: ${decision.reason ?? 'missing api.fine_tuning.jobs.read'}`);
          if ((decision.project?.assignments ?? []).length === 0) throw new SessionsError(403, 'Forbidden: your project has no namespace assigned');
          req.resume();
          return send(res, 200, route.document, requestId);
        }
        if (route.kind === 'jobs') return await handleJobs(req, res, route, decision, method, query, requestId);
        return await handlePods(req, res, route, decision, method, path, query, requestId);
      } catch (error) {
        req.resume();
        fail(res, error, requestId);
      }
    },
  };
}

export type FederationRoutes = ReturnType<typeof createFederationRoutes>;
