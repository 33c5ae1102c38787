/**
 * What `/v1/sessions/<cluster>/...` forwards: an allow-list of Kubernetes resources and verbs, the same
 * for every caller, on top of the project checks in kubeProxy.ts (which namespace, read or write). The
 * agent runs each request with its own service account, whose Roles must grant what it needs to run
 * jobs, notebooks and runtimes; a project member must not borrow those rights beyond looking at and
 * tidying up their own work. So, never Secrets (a job's presigned URLs, a notebook's API key), never
 * service account tokens, never a pod's or Service's proxy (notebooks have their own route,
 * notebookProxy.ts), and exec, attach and port-forward only where the operator turned them on
 * (MARINER_SESSIONS_EXEC; the chart's worker.sessions.allowExec grants the agent pods/exec to match).
 * docs/helm.md lists the same table for operators.
 */

/** A Kubernetes verb, from the request's method and whether it names one object (RBAC's request attributes). */
export type KubeVerb = 'get' | 'list' | 'watch' | 'create' | 'update' | 'patch' | 'delete' | 'deletecollection';

const READ: readonly KubeVerb[] = ['get', 'list', 'watch'];

/**
 * Namespaced resources, as `<group>/<resource>[/<subresource>]` (the core group is empty), and the verbs
 * forwarded. Writes: deleting a pod (a stuck trainer restarts; its Job makes another); nothing else,
 * since Mariner owns the Jobs, Deployments and StatefulSets it made and reconciles them.
 */
export const NAMESPACED_ALLOW_LIST: Readonly<Record<string, readonly KubeVerb[]>> = {
  '/pods': [...READ, 'delete'],
  '/pods/log': ['get'],
  '/pods/status': READ,
  '/services': READ,
  '/endpoints': READ,
  '/configmaps': READ,
  '/events': READ,
  '/persistentvolumeclaims': READ,
  '/resourcequotas': READ,
  '/limitranges': READ,
  'apps/deployments': READ,
  'apps/deployments/status': READ,
  'apps/deployments/scale': ['get'],
  'apps/statefulsets': READ,
  'apps/statefulsets/status': READ,
  'apps/statefulsets/scale': ['get'],
  'apps/replicasets': READ,
  'batch/jobs': READ,
  'batch/jobs/status': READ,
  'batch/cronjobs': READ,
  'events.k8s.io/events': READ,
  'discovery.k8s.io/endpointslices': READ,
  'autoscaling/horizontalpodautoscalers': READ,
  'kueue.x-k8s.io/workloads': READ,
  'kueue.x-k8s.io/localqueues': READ,
};

/** Opened by MARINER_SESSIONS_EXEC only: the upgrades (WebSocket or SPDY) into a pod. */
export const EXEC_ALLOW_LIST: Readonly<Record<string, readonly KubeVerb[]>> = {
  '/pods/exec': ['get', 'create'],
  '/pods/attach': ['get', 'create'],
  '/pods/portforward': ['get', 'create'],
};

/** Cluster-scoped resources (for keys with api.k8s.clusterscope): the nodes, read only. */
export const CLUSTER_ALLOW_LIST: Readonly<Record<string, readonly KubeVerb[]>> = {
  '/nodes': READ,
  '/nodes/status': READ,
};

/** What a Kubernetes API path asks for, as RBAC sees it; null for discovery and non-resource paths. */
export interface KubeRequest {
  /** `<group>/<resource>[/<subresource>]`, the core group empty (`/pods/log`, `apps/deployments`). */
  resource: string;
  /** The namespace of a namespaced request; the namespace object itself is resource `/namespaces`. */
  namespace: string | undefined;
  verb: KubeVerb;
}

/**
 * Parses `/api/v1/...` and `/apis/<group>/<version>/...` as the apiserver does (its RequestInfo): the
 * namespace, the resource, the object's name and a subresource; the verb from the method (a GET of a
 * collection is list, or watch with ?watch=true; a GET with ?watch on one object is watch too).
 */
export function kubeRequestOf(path: string, method: string): KubeRequest | null {
  const [pathname = '', query = ''] = path.split('?', 2);
  const segments = pathname.split('/').filter(Boolean).map(decodeURIComponent);
  let group: string;
  let rest: string[];
  if (segments[0] === 'api' && segments.length >= 2) {
    group = '';
    rest = segments.slice(2);
  } else if (segments[0] === 'apis' && segments.length >= 3) {
    group = segments[1]!;
    rest = segments.slice(3);
  } else {
    return null;
  }
  if (rest.length === 0) return null;
  // The deprecated /watch/ prefix (`/api/v1/watch/namespaces/x/pods`).
  let watchPrefix = false;
  if (rest[0] === 'watch') {
    watchPrefix = true;
    rest = rest.slice(1);
  }
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1]!;
    rest = rest.slice(2);
  } else if (rest[0] === 'namespaces' && rest.length === 2 && group === '') {
    // The namespace object itself.
    return { resource: '/namespaces', namespace: rest[1]!, verb: verbOf(method, true, watchPrefix, query) };
  }
  const [resource, name, ...subresource] = rest;
  if (!resource) return null;
  const resourcePath = `${group}/${resource}${subresource.length > 0 ? `/${subresource[0]}` : ''}`;
  return { resource: resourcePath, namespace, verb: verbOf(method, name !== undefined, watchPrefix, query) };
}

function verbOf(method: string, named: boolean, watchPrefix: boolean, query: string): KubeVerb {
  const watch = watchPrefix || /(?:^|&)watch=(?:true|1)(?:&|$)/i.test(query);
  switch (method) {
    case 'GET':
    case 'HEAD':
    case 'OPTIONS':
      return watch ? 'watch' : named ? 'get' : 'list';
    case 'POST':
      return 'create';
    case 'PUT':
      return 'update';
    case 'PATCH':
      return 'patch';
    case 'DELETE':
      return named ? 'delete' : 'deletecollection';
    default:
      return 'create';
  }
}

/**
 * Why a request is not forwarded, or null when the allow-list lets it through. Discovery and
 * non-resource paths (`/api`, `/apis/apps/v1`, `/version`, `/openapi/v3`) pass: they read no object.
 */
export function refusedKubeRequest(path: string, method: string, options: { allowExec: boolean }): string | null {
  const request = kubeRequestOf(path, method);
  if (!request) return null;
  const { resource, namespace, verb } = request;
  const shown = resource.startsWith('/') ? resource.slice(1) : resource;
  if (resource === '/namespaces') {
    return verb === 'get' ? null : `Forbidden: ${verb} of a namespace is not forwarded by /v1/sessions`;
  }
  if (resource === '/secrets' || resource.startsWith('/secrets/')) {
    return 'Forbidden: /v1/sessions never forwards Secrets (they hold the credentials of the platform and of your jobs)';
  }
  const table = namespace === undefined ? CLUSTER_ALLOW_LIST : { ...NAMESPACED_ALLOW_LIST, ...(options.allowExec ? EXEC_ALLOW_LIST : {}) };
  const verbs = table[resource];
  if (!verbs) {
    if (namespace !== undefined && resource in EXEC_ALLOW_LIST) {
      return `Forbidden: ${shown} is turned off on this platform (MARINER_SESSIONS_EXEC); read the pod's logs instead`;
    }
    return `Forbidden: ${shown}${namespace === undefined ? ' (cluster-scoped)' : ''} is not among the resources /v1/sessions forwards (docs/helm.md lists them)`;
  }
  if (!verbs.includes(verb)) return `Forbidden: ${verb} on ${shown} is not forwarded by /v1/sessions (allowed: ${verbs.join(', ')})`;
  return null;
}
