import { randomBytes, randomUUID } from 'node:crypto';
import { KubeConfig } from '@kubernetes/client-node';
import {
  createServer,
  request as httpRequest,
  STATUS_CODES,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type RequestListener,
  type ServerResponse,
} from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { connect, type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import zlib from 'node:zlib';
import { WebSocketServer, type WebSocket } from 'ws';

/**
 * A Kubernetes API server for tests: the REST protocol of kube-apiserver v1.35 for
 * the resources the cluster agent uses, in memory on loopback. It is a test double,
 * so it answers as the real server does (Status objects, reasons and codes,
 * validation of the mistakes that matter, resourceVersion conflicts, watch
 * semantics), but no controllers run: nothing schedules pods, starts containers or
 * creates a Job's pods. Tests move objects along by writing `status`, and feed pod
 * logs with appendLog/endLog.
 */

export interface KubeApiServer {
  /** http://127.0.0.1:<port> */
  url: string;
  /**
   * https://127.0.0.1:<port>, the same API over TLS with TEST_TLS's certificate, for
   * kubectl and helm: client-go sends credentials only over TLS (clientcmd drops the
   * user's auth for http URLs). client-node takes `url` with `skipTLSVerify: true`.
   */
  httpsUrl: string;
  /** The bearer token it requires (random per server); requests without it get a 401 Status. */
  token: string;
  /** Objects by kind for assertions, e.g. server.objects('Job', 'ns'); copies, sorted by namespace and name. */
  objects(kind: string, namespace?: string): any[];
  /**
   * Append lines to a pod container's log (a newline is added when text lacks one);
   * followers of `log?follow=true` receive them at once. The container defaults to
   * the pod's first one. As on a real cluster, the log can only be read once the pod
   * has left phase Pending.
   */
  appendLog(namespace: string, pod: string, text: string, container?: string): void;
  /** Ends the log stream of a pod (followers' responses end), like the container terminating. */
  endLog(namespace: string, pod: string, container?: string): void;
  /**
   * Where a Service's port is served, for the service proxy
   * (`/api/v1/namespaces/<ns>/services/<name>:<port>/proxy/...`): no pods run here, so the test names
   * the server standing in for the Service's endpoints (`http://127.0.0.1:<port>`). A port with none
   * answers 503 "no endpoints available", as a Service without ready pods does.
   */
  serveService(namespace: string, name: string, port: number, target: string): void;
  /** Requests seen, for assertions: method, path (with query), and headers. */
  requests: { method: string; path: string; headers: Record<string, string | string[] | undefined> }[];
  /** The terminal sizes execs with `tty=true` sent on the resize channel (4), in order. */
  terminalSizes: { pod: string; width: number; height: number }[];
  close(): Promise<void>;
}

/** A node to pre-create, with GPUs advertised the way the NVIDIA device plugin and GPU feature discovery do. */
export interface NodeSeed {
  name: string;
  gpus?: number;
  /** Value of the `nvidia.com/gpu.product` label; defaults to NVIDIA-H100-80GB-HBM3 when gpus > 0. */
  gpuProduct?: string;
  /** Defaults to '8'. */
  cpu?: string;
  /** Defaults to '32Gi'. */
  memory?: string;
  /** The Ready condition; defaults to true. */
  ready?: boolean;
}

/** The exec subprotocols served: v5 adds the close frame that ends stdin. */
const EXEC_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io'];

/**
 * The Status an exec's channel 3 carries when the command ends at once: `false` exits 1 and
 * `sh -c 'exit N'` (or /bin/sh) exits N, as the kubelet reports a non-zero exit (its
 * remotecommand ServeExec: reason NonZeroExitCode, a cause of type ExitCode whose message is the
 * code); exit 0 is a plain Success. Any other command is null: the `cat` echo.
 */
function exitStatusOf(command: string[]): Record<string, unknown> | null {
  const shell = command.length === 3 && ['sh', '/bin/sh'].includes(command[0]!) && command[1] === '-c' ? /^\s*exit\s+(\d+)\s*$/.exec(command[2]!) : null;
  const code = command.length === 1 && command[0] === 'false' ? 1 : shell ? Number(shell[1]) % 256 : null;
  if (code === null) return null;
  if (code === 0) return { metadata: {}, status: 'Success' };
  return {
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: error executing command [${command.join(' ')}], exit code ${code}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(code) }] },
  };
}

/**
 * A fixed self-signed certificate for 127.0.0.1 and localhost (valid 2000 to 2100; it
 * is its own CA, so `certificate-authority-data` can be the cert), so that tests need
 * no openssl. Like Go's httptest certificate, the key guards nothing but loopback.
 */
export const TEST_TLS = {
  key: `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgxV7BbB+vL2CH/82G
dY5KPRdMr4oMseVlZFfjKeKB3mChRANCAARbAJ5Rag8NNkSUiH6vN0FVl/H+tVxo
yVbeSF46a2Rblb5avbzCKbBwAuqvf0+3TiyAoXeEMVA644ygoNCKQ8vs
-----END PRIVATE KEY-----`,
  cert: `-----BEGIN CERTIFICATE-----
MIIBrjCCAVSgAwIBAgIBATAKBggqhkjOPQQDAjAlMSMwIQYDVQQDDBprdWJlLWFw
aXNlcnZlci10ZXN0LWRvdWJsZTAgFw0wMDAxMDEwMDAwMDBaGA8yMTAwMDEwMTAw
MDAwMFowJTEjMCEGA1UEAwwaa3ViZS1hcGlzZXJ2ZXItdGVzdC1kb3VibGUwWTAT
BgcqhkjOPQIBBggqhkjOPQMBBwNCAARbAJ5Rag8NNkSUiH6vN0FVl/H+tVxoyVbe
SF46a2Rblb5avbzCKbBwAuqvf0+3TiyAoXeEMVA644ygoNCKQ8vso3MwcTAaBgNV
HREEEzARhwR/AAABgglsb2NhbGhvc3QwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8B
Af8EBAMCAoQwEwYDVR0lBAwwCgYIKwYBBQUHAwEwHQYDVR0OBBYEFAYorn/I7cYa
eh4R6ZaKgC6oCYj0MAoGCCqGSM49BAMCA0gAMEUCIBdv/gRlrfBM5cnZQB4SbXxS
mjJb7R+GmRB/DNFSNSd/AiEA/Ywots/e18m6EYTr6LWHhe3PbTRLIoUxfrB6oqJQ
+lQ=
-----END CERTIFICATE-----`,
};

const SERVER_VERSION = {
  major: '1',
  minor: '35',
  gitVersion: 'v1.35.0',
  gitCommit: '0'.repeat(40),
  gitTreeState: 'clean',
  buildDate: '2025-12-17T00:00:00Z',
  goVersion: 'go1.25.5',
  compiler: 'gc',
  platform: 'linux/amd64',
};

/** Kubernetes objects are open-ended JSON; the double reads only a few well-known fields. */
type KubeObject = { apiVersion?: string; kind?: string; metadata: ObjectMeta; spec?: any; status?: any } & Record<string, any>;
interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  ownerReferences?: { uid: string }[];
  [field: string]: unknown;
}

interface ResourceType {
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
  shortNames: string[];
  /** Subresources beyond the object itself: status, scale, log, exec. */
  subresources: string[];
  /** Shown by `kubectl get all`. */
  inAll: boolean;
}

/** Resources that live outside namespaces. */
const CLUSTER_SCOPED = ['namespaces', 'nodes', 'resourceflavors', 'clusterqueues'];

function resource(apiVersion: string, plural: string, kind: string, shortNames: string[], subresources: string[] = [], inAll = false): ResourceType {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  return { group, version, plural, kind, namespaced: !CLUSTER_SCOPED.includes(plural), shortNames, subresources, inAll };
}

const RESOURCES: ResourceType[] = [
  resource('v1', 'namespaces', 'Namespace', ['ns']),
  resource('v1', 'nodes', 'Node', ['no']),
  resource('v1', 'pods', 'Pod', ['po'], ['status', 'log', 'exec'], true),
  resource('v1', 'services', 'Service', ['svc'], ['proxy'], true),
  resource('v1', 'configmaps', 'ConfigMap', ['cm']),
  resource('v1', 'secrets', 'Secret', []),
  resource('v1', 'events', 'Event', ['ev']),
  resource('batch/v1', 'jobs', 'Job', [], ['status'], true),
  resource('apps/v1', 'deployments', 'Deployment', ['deploy'], ['status', 'scale'], true),
  resource('apps/v1', 'statefulsets', 'StatefulSet', ['sts'], ['status', 'scale'], true),
  resource('rbac.authorization.k8s.io/v1', 'rolebindings', 'RoleBinding', []),
  // Kueue's CRDs (v1beta1), stored as they are: no Kueue controller runs, a test plays its admission by writing Workload status.
  resource('kueue.x-k8s.io/v1beta1', 'resourceflavors', 'ResourceFlavor', ['rf']),
  resource('kueue.x-k8s.io/v1beta1', 'clusterqueues', 'ClusterQueue', ['cq'], ['status']),
  resource('kueue.x-k8s.io/v1beta1', 'localqueues', 'LocalQueue', ['queue', 'lq'], ['status']),
  resource('kueue.x-k8s.io/v1beta1', 'workloads', 'Workload', ['wl'], ['status']),
];

const RETRY = 'please apply your changes to the latest version and try again';
const byKind = (kind: string) => RESOURCES.find((type) => type.kind === kind);
const NAMESPACES = byKind('Namespace')!;
const PODS = byKind('Pod')!;
const SERVICES = byKind('Service')!;
/** The service proxy: `/api/v1/namespaces/<ns>/services/<[scheme:]name[:port]>/proxy[/<path>]`. */
const SERVICE_PROXY = /^\/api\/v1\/namespaces\/([^/]+)\/services\/([^/]+)\/proxy(\/.*)?$/;

const apiVersionOf = (type: ResourceType) => (type.group ? `${type.group}/${type.version}` : type.version);
/** How the apiserver names a resource in messages: `pods`, `jobs.batch`. */
const qualifiedName = (type: ResourceType) => (type.group ? `${type.plural}.${type.group}` : type.plural);
/** Only workloads carry a status subresource here, so only they keep status out of ordinary updates and count generations. */
const isWorkload = (type: ResourceType) => type.subresources.includes('status');

/** A failure the apiserver reports as a `Status` object (k8s.io/apimachinery/pkg/api/errors). */
class KubeError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

const detailsOf = (type: ResourceType, name: string) => ({ name, ...(type.group && { group: type.group }), kind: type.plural });
const notFound = (type: ResourceType, name: string) => new KubeError(404, 'NotFound', `${qualifiedName(type)} "${name}" not found`, detailsOf(type, name));
const badRequest = (message: string) => new KubeError(400, 'BadRequest', message);
const pageNotFound = () => new KubeError(404, 'NotFound', 'the server could not find the requested resource', {});
const unsupportedMediaType = (accepted: string[]) =>
  new KubeError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: ${accepted.join(', ')}`);
const methodNotAllowed = () => new KubeError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource', {});

interface FieldError {
  field: string;
  reason: 'FieldValueRequired' | 'FieldValueInvalid' | 'FieldValueNotSupported';
  message: string;
}

function invalid(type: ResourceType, name: string, causes: FieldError[]): KubeError {
  const listed = causes.map((cause) => `${cause.field}: ${cause.message}`);
  const summary = listed.length === 1 ? listed[0] : `[${listed.join(', ')}]`;
  const qualifiedKind = type.group ? `${type.kind}.${type.group}` : type.kind;
  return new KubeError(422, 'Invalid', `${qualifiedKind} "${name}" is invalid: ${summary}`, {
    name,
    ...(type.group && { group: type.group }),
    kind: type.kind,
    causes,
  });
}

function statusBody(error: KubeError) {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: error.message,
    reason: error.reason,
    ...(error.details && { details: error.details }),
    code: error.code,
  };
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** The validation rules (pkg/apis/*\/validation) that an agent can plausibly break; the rest is trusted. */
function validate(type: ResourceType, object: KubeObject): FieldError[] {
  const errors: FieldError[] = [];
  const required = (field: string, detail = '') => errors.push({ field, reason: 'FieldValueRequired', message: `Required value${detail && `: ${detail}`}` });
  const name = object.metadata.name!;
  const asLabel = type.plural === 'namespaces' || type.plural === 'services';
  if (asLabel ? !DNS_LABEL.test(name) || name.length > 63 : !DNS_SUBDOMAIN.test(name) || name.length > 253) {
    const rule = asLabel
      ? "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
      : "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
    errors.push({ field: 'metadata.name', reason: 'FieldValueInvalid', message: `Invalid value: "${name}": ${rule}` });
  }
  const podSpec = (spec: any, path: string) => {
    if (!Array.isArray(spec?.containers) || spec.containers.length === 0) return required(`${path}.containers`);
    spec.containers.forEach((container: any, i: number) => {
      if (!container?.name) required(`${path}.containers[${i}].name`);
      if (!container?.image) required(`${path}.containers[${i}].image`);
    });
  };
  if (type.kind === 'Pod') podSpec(object.spec, 'spec');
  if (type.kind === 'Job') {
    podSpec(object.spec?.template?.spec, 'spec.template.spec');
    const restartPolicy = object.spec?.template?.spec?.restartPolicy;
    if (restartPolicy !== 'OnFailure' && restartPolicy !== 'Never') {
      errors.push({
        field: 'spec.template.spec.restartPolicy',
        reason: 'FieldValueNotSupported',
        message: `Unsupported value: "${restartPolicy}": supported values: "OnFailure", "Never"`,
      });
    }
  }
  if (type.kind === 'Deployment' || type.kind === 'StatefulSet') {
    const selector = object.spec?.selector?.matchLabels;
    if (!selector) required('spec.selector');
    else if (!labelsMatch(selector, object.spec?.template?.metadata?.labels ?? {})) {
      const message = 'Invalid value: `selector` does not match template `labels`';
      errors.push({ field: 'spec.template.metadata.labels', reason: 'FieldValueInvalid', message });
    }
    podSpec(object.spec?.template?.spec, 'spec.template.spec');
  }
  return errors;
}

const labelsMatch = (wanted: Record<string, string>, labels: Record<string, string>) => Object.entries(wanted).every(([key, value]) => labels[key] === value);

/** The defaults the apiserver fills in on create that agents read back. */
function applyDefaults(type: ResourceType, object: KubeObject): void {
  const spec = (object.spec ??= {});
  switch (type.kind) {
    case 'Namespace':
      object.metadata.labels = { ...object.metadata.labels, 'kubernetes.io/metadata.name': object.metadata.name! };
      object.spec = { finalizers: ['kubernetes'], ...spec };
      object.status = { phase: 'Active' };
      break;
    case 'Pod':
      spec.restartPolicy ??= 'Always';
      object.status = { phase: 'Pending' };
      break;
    case 'Job':
      if (spec.template?.spec) spec.template.spec.restartPolicy ??= 'Always';
      object.status = {};
      break;
    case 'Deployment':
    case 'StatefulSet':
      spec.replicas ??= 1;
      object.status = {};
      break;
    case 'Service':
      spec.type ??= 'ClusterIP';
      spec.clusterIP ??= `10.96.${randomBytes(1)[0]}.${1 + (randomBytes(1)[0] % 254)}`;
      break;
    case 'Secret':
      object.type ??= 'Opaque';
      // stringData is write-only: the apiserver folds it into data.
      for (const [key, value] of Object.entries<string>(object.stringData ?? {})) {
        object.data = { ...object.data, [key]: Buffer.from(value).toString('base64') };
      }
      delete object.stringData;
      break;
  }
  if (Object.keys(object.spec).length === 0 && !['Pod', 'Namespace', 'Node'].includes(type.kind)) delete object.spec;
}

/**
 * Label selectors (`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`) and
 * field selectors (the equality forms), as k8s.io/apimachinery/pkg/labels parses them.
 */
function parseSelector(text: string | null, kind: 'label' | 'field'): (values: (key: string) => string | undefined) => boolean {
  const requirements = (text?.match(/[^,(]+(\([^)]*\))?/g) ?? [])
    .filter((term) => term.trim() !== '')
    .map((term) => {
      const match = /^\s*(!?)([A-Za-z0-9./_-]+)\s*(?:(==|=|!=|\sin|\snotin)\s*([A-Za-z0-9._-]*|\([^)]*\)))?\s*$/.exec(term);
      if (!match || (kind === 'field' && (match[1] || !['=', '==', '!='].includes(match[3])))) {
        throw badRequest(`unable to parse requirement: ${kind} selector "${term}"`);
      }
      const [, not, key, operator = '', value] = match;
      const values = value?.replace(/[()\s]/g, '').split(',') ?? [];
      return (valueOf: (key: string) => string | undefined) => {
        const actual = valueOf(key);
        if (!operator) return not ? actual === undefined : actual !== undefined;
        if (operator.trim() === 'in') return actual !== undefined && values.includes(actual);
        if (operator.trim() === 'notin') return actual === undefined || !values.includes(actual);
        return operator === '!=' ? actual !== value : (actual ?? '') === value;
      };
    });
  return (valueOf) => requirements.every((requirement) => requirement(valueOf));
}

function fieldValue(object: KubeObject, path: string): string {
  const value = path.split('.').reduce<any>((node, key) => node?.[key], object);
  return value === undefined || value === null ? '' : String(value);
}

interface Listing {
  type: ResourceType;
  namespace?: string;
  matches(object: KubeObject): boolean;
}

function listingOf(type: ResourceType, namespace: string | undefined, query: URLSearchParams): Listing {
  const labels = parseSelector(query.get('labelSelector'), 'label');
  const fields = parseSelector(query.get('fieldSelector'), 'field');
  return {
    type,
    namespace,
    matches: (object) =>
      (namespace === undefined || object.metadata.namespace === namespace) &&
      labels((key) => object.metadata.labels?.[key]) &&
      fields((path) => fieldValue(object, path)),
  };
}

/** A change, kept so watches that give a resourceVersion can resume from it. */
interface Change {
  type: ResourceType;
  resourceVersion: number;
  before?: KubeObject;
  after: KubeObject;
  deleted: boolean;
}

/** The watch event a change means to a listing: objects leaving a selection are DELETED for it, as in the apiserver's cacher. */
function eventFor(listing: Listing, change: Change): { type: string; object: KubeObject } | undefined {
  if (change.type !== listing.type) return undefined;
  const was = change.before !== undefined && listing.matches(change.before);
  const is = !change.deleted && listing.matches(change.after);
  if (was && is) return { type: 'MODIFIED', object: change.after };
  if (is) return { type: 'ADDED', object: change.after };
  if (was) return { type: 'DELETED', object: change.after };
  return undefined;
}

interface ContainerLog {
  text: string;
  ended: boolean;
  followers: Set<ServerResponse>;
}

const keyOf = (namespace: string | undefined, name: string) => `${namespace ?? ''}/${name}`;
const copy = <T>(value: T): T => structuredClone(value);
const now = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

/** The cluster state: objects, their history of changes, watches and logs. */
class Cluster {
  private readonly stores = new Map(RESOURCES.map((type) => [type, new Map<string, KubeObject>()]));
  private readonly history: Change[] = [];
  readonly watches = new Set<{ listing: Listing; send(event: { type: string; object: KubeObject }): void; end(): void }>();
  readonly logs = new Map<string, ContainerLog>();
  private revision = 0;

  get resourceVersion(): string {
    return String(this.revision);
  }

  get(type: ResourceType, namespace: string | undefined, name: string): KubeObject {
    const object = this.stores.get(type)!.get(keyOf(namespace, name));
    if (!object) throw notFound(type, name);
    return object;
  }

  list(listing: Listing): KubeObject[] {
    return [...this.stores.get(listing.type)!.values()]
      .filter((object) => listing.matches(object))
      .sort((a, b) => keyOf(a.metadata.namespace, a.metadata.name!).localeCompare(keyOf(b.metadata.namespace, b.metadata.name!)));
  }

  changesSince(resourceVersion: number): Change[] {
    return this.history.filter((change) => change.resourceVersion > resourceVersion);
  }

  /** In the apiserver's order: namespace admission, then generateName, defaults and validation, then storage. */
  create(type: ResourceType, namespace: string | undefined, body: KubeObject): KubeObject {
    if (namespace !== undefined && !this.stores.get(NAMESPACES)!.has(keyOf(undefined, namespace))) {
      throw notFound(NAMESPACES, namespace);
    }
    const object = copy(body);
    if (!object.metadata.name && !object.metadata.generateName) {
      throw invalid(type, '', [{ field: 'metadata.name', reason: 'FieldValueRequired', message: 'Required value: name or generateName is required' }]);
    }
    object.metadata.name ||= `${object.metadata.generateName}${randomBytes(3).toString('hex').slice(0, 5)}`;
    if (type.namespaced) object.metadata.namespace = namespace;
    applyDefaults(type, object);
    const errors = validate(type, object);
    if (errors.length > 0) throw invalid(type, object.metadata.name, errors);
    if (this.stores.get(type)!.has(keyOf(namespace, object.metadata.name))) {
      throw new KubeError(409, 'AlreadyExists', `${qualifiedName(type)} "${object.metadata.name}" already exists`, detailsOf(type, object.metadata.name));
    }
    Object.assign(object.metadata, { uid: randomUUID(), creationTimestamp: now(), ...(isWorkload(type) && { generation: 1 }) });
    return this.commit(type, undefined, object);
  }

  /** PUT semantics; `part` is the subresource written: the object without its status, or the status alone. */
  update(type: ResourceType, current: KubeObject, body: KubeObject, part: 'object' | 'status'): KubeObject {
    const name = current.metadata.name!;
    if (body.metadata.name !== name) throw badRequest(`the name of the object (${body.metadata.name ?? ''}) does not match the name on the URL (${name})`);
    if (body.metadata.resourceVersion !== undefined && body.metadata.resourceVersion !== current.metadata.resourceVersion) {
      const message = `Operation cannot be fulfilled on ${qualifiedName(type)} "${name}": the object has been modified; ${RETRY}`;
      throw new KubeError(409, 'Conflict', message, detailsOf(type, name));
    }
    const { uid, creationTimestamp, namespace, generation } = current.metadata;
    const next: KubeObject =
      part === 'status'
        ? { ...copy(current), status: copy(body.status) }
        : { ...copy(body), metadata: { ...copy(body.metadata), uid, creationTimestamp, namespace, generation } };
    if (part === 'object') {
      if (isWorkload(type)) next.status = copy(current.status);
      const errors = validate(type, next);
      if (errors.length > 0) throw invalid(type, name, errors);
      if (isWorkload(type) && JSON.stringify(next.spec) !== JSON.stringify(current.spec)) next.metadata.generation = (generation ?? 0) + 1;
    }
    return this.commit(type, current, next);
  }

  /**
   * Deletes at once what a real cluster deletes in the background: a namespace's
   * contents (before the namespace, as its finalizer does) and, unless orphaning, the
   * objects the deleted one owns (the garbage collector's work).
   */
  delete(type: ResourceType, current: KubeObject, propagation: string): KubeObject {
    const inNamespace = (object: KubeObject) => type === NAMESPACES && object.metadata.namespace === current.metadata.name;
    const owned = (object: KubeObject) => propagation !== 'Orphan' && !!object.metadata.ownerReferences?.some((owner) => owner.uid === current.metadata.uid);
    const contents = RESOURCES.flatMap((t) => this.list({ type: t, matches: inNamespace }));
    for (const object of contents) this.deleteIfPresent(object, propagation);
    const deleted = this.commit(type, current, { ...copy(current), ...(type === NAMESPACES && { status: { phase: 'Terminating' } }) }, true);
    for (const object of RESOURCES.flatMap((t) => this.list({ type: t, matches: owned }))) this.deleteIfPresent(object, propagation);
    return deleted;
  }

  private deleteIfPresent(object: KubeObject, propagation: string): void {
    const type = byKind(object.kind!)!;
    if (this.stores.get(type)!.has(keyOf(object.metadata.namespace, object.metadata.name!))) this.delete(type, object, propagation);
  }

  private commit(type: ResourceType, before: KubeObject | undefined, object: KubeObject, deleted = false): KubeObject {
    object.apiVersion = apiVersionOf(type);
    object.kind = type.kind;
    object.metadata.resourceVersion = String(++this.revision);
    const store = this.stores.get(type)!;
    const key = keyOf(object.metadata.namespace, object.metadata.name!);
    if (deleted) store.delete(key);
    else store.set(key, object);
    const change: Change = { type, resourceVersion: this.revision, before, after: object, deleted };
    this.history.push(change);
    for (const watch of this.watches) {
      const event = eventFor(watch.listing, change);
      if (event) watch.send(event);
    }
    return copy(object);
  }

  /** Seeds an object outside the API, as the kubelet registering a node does. */
  seed(kind: string, object: KubeObject): void {
    const type = byKind(kind)!;
    Object.assign(object.metadata, { uid: randomUUID(), creationTimestamp: now() });
    this.commit(type, undefined, object);
  }

  logOf(namespace: string, pod: string, container: string): ContainerLog {
    const key = `${namespace}/${pod}/${container}`;
    let log = this.logs.get(key);
    if (!log) this.logs.set(key, (log = { text: '', ended: false, followers: new Set() }));
    return log;
  }
}

/** A node as its kubelet, the NVIDIA device plugin (`nvidia.com/gpu`) and GPU feature discovery (labels) describe it. */
function nodeObject(seed: NodeSeed, index: number): KubeObject {
  const gpus = seed.gpus ?? 0;
  const gpuLabels = {
    'nvidia.com/gpu.present': 'true',
    'nvidia.com/gpu.count': String(gpus),
    'nvidia.com/gpu.product': seed.gpuProduct ?? 'NVIDIA-H100-80GB-HBM3',
  };
  const labels = { 'kubernetes.io/hostname': seed.name, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64', ...(gpus > 0 && gpuLabels) };
  const resources = { cpu: seed.cpu ?? '8', memory: seed.memory ?? '32Gi', pods: '110', ...(gpus > 0 && { 'nvidia.com/gpu': String(gpus) }) };
  const readiness =
    (seed.ready ?? true)
      ? { status: 'True', reason: 'KubeletReady', message: 'kubelet is posting ready status' }
      : { status: 'False', reason: 'KubeletNotReady', message: 'container runtime network not ready' };
  return {
    metadata: { name: seed.name, labels },
    spec: {},
    status: {
      capacity: resources,
      allocatable: resources,
      conditions: [{ type: 'Ready', ...readiness, lastHeartbeatTime: now(), lastTransitionTime: now() }],
      addresses: [
        { type: 'InternalIP', address: `10.0.0.${index + 10}` },
        { type: 'Hostname', address: seed.name },
      ],
      nodeInfo: { kubeletVersion: SERVER_VERSION.gitVersion, operatingSystem: 'linux', architecture: 'amd64', containerRuntimeVersion: 'containerd://2.1.0' },
    },
  };
}

/** Discovery documents: what kubectl and client-go read to map kinds and short names to URLs. */
function apiResourceList(group: string, version: string) {
  const types = RESOURCES.filter((type) => type.group === group && type.version === version);
  const verbs = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];
  const subresource = (type: ResourceType, name: string) =>
    ({
      status: { kind: type.kind, verbs: ['get', 'patch', 'update'] },
      scale: { group: 'autoscaling', version: 'v1', kind: 'Scale', verbs: ['get', 'patch', 'update'] },
      log: { kind: 'Pod', verbs: ['get'] },
      exec: { kind: 'PodExecOptions', verbs: ['create', 'get'] },
      proxy: { kind: 'ServiceProxyOptions', verbs: ['create', 'delete', 'get', 'patch', 'update'] },
    })[name];
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion: group ? `${group}/${version}` : version,
    resources: types.flatMap((type) => [
      {
        name: type.plural,
        singularName: type.kind.toLowerCase(),
        namespaced: type.namespaced,
        kind: type.kind,
        verbs,
        ...(type.shortNames.length > 0 && { shortNames: type.shortNames }),
        ...(type.inAll && { categories: ['all'] }),
      },
      ...type.subresources.map((name) => ({ name: `${type.plural}/${name}`, singularName: '', namespaced: type.namespaced, ...subresource(type, name) })),
    ]),
  };
}

function apiGroupList() {
  const groups = [...new Set(RESOURCES.filter((type) => type.group).map(apiVersionOf))].map((groupVersion) => {
    const [name, version] = groupVersion.split('/');
    return { name, versions: [{ groupVersion, version }], preferredVersion: { groupVersion, version } };
  });
  return { kind: 'APIGroupList', apiVersion: 'v1', groups };
}

/** The age of a timestamp as k8s.io/apimachinery/pkg/util/duration.HumanDuration prints it, to the day. */
function humanDuration(timestamp: string | undefined): string {
  const seconds = Math.max(0, Math.floor((Date.now() - Date.parse(timestamp ?? '')) / 1000));
  const minutes = Math.floor(seconds / 60);
  const hours = Math.floor(minutes / 60);
  if (seconds < 120) return `${seconds}s`;
  if (minutes < 10) return seconds % 60 ? `${minutes}m${seconds % 60}s` : `${minutes}m`;
  if (minutes < 180) return `${minutes}m`;
  if (hours < 8) return minutes % 60 ? `${hours}h${minutes % 60}m` : `${hours}h`;
  if (hours < 48) return `${hours}h`;
  return `${Math.floor(hours / 24)}d`;
}

/**
 * The server-side printing of pods that kubectl get asks for
 * (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`), with the columns of
 * pkg/printers/internalversion. Other kinds are answered with their plain list,
 * which kubectl prints as NAME and AGE.
 */
function podTable(pods: KubeObject[], resourceVersion: string, includeObject: string | null) {
  const column = (name: string, format = '', priority = 0) => ({ name, type: 'string', format, description: name, priority });
  const columnDefinitions = [
    ...['Name', 'Ready', 'Status', 'Restarts', 'Age'].map((name) => column(name, name === 'Name' ? 'name' : '')),
    ...['IP', 'Node'].map((name) => column(name, '', 1)),
  ];
  const cells = ({ metadata, spec, status }: KubeObject) => {
    const statuses: any[] = status?.containerStatuses ?? [];
    let reason = status?.reason ?? status?.phase;
    for (const { state } of statuses) {
      reason = state?.waiting?.reason ?? state?.terminated?.reason ?? (state?.terminated ? `ExitCode:${state.terminated.exitCode}` : reason);
    }
    if (metadata.deletionTimestamp) reason = 'Terminating';
    const ready = `${statuses.filter((container) => container.ready).length}/${spec?.containers?.length ?? 0}`;
    const restarts = String(statuses.reduce((sum, container) => sum + (container.restartCount ?? 0), 0));
    const age = humanDuration(metadata.creationTimestamp);
    return [metadata.name, ready, reason, restarts, age, status?.podIP ?? '<none>', spec?.nodeName ?? '<none>'];
  };
  const rowObject = (object: KubeObject) =>
    includeObject === 'Object' ? object : { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: object.metadata };
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: { resourceVersion },
    columnDefinitions,
    rows: pods.map((object) => ({ cells: cells(object), ...(includeObject !== 'None' && { object: rowObject(object) }) })),
  };
}

/** RFC 7386. Strategic merge patches are applied the same way, which differs only for lists merged by key. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return patch;
  const result: Record<string, unknown> = isPlainObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return result;
}

const isPlainObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** RFC 6902, the media type client-node prefers for patch calls. */
function jsonPatch(document: unknown, operations: unknown): unknown {
  if (!Array.isArray(operations)) throw badRequest('json patch must be an array of operations');
  const root = { value: copy(document) as any };
  const locate = (pointer: unknown) => {
    if (typeof pointer !== 'string' || (pointer !== '' && !pointer.startsWith('/'))) throw badRequest(`invalid JSON pointer "${pointer}"`);
    const tokens = [
      'value',
      ...pointer
        .split('/')
        .slice(1)
        .map((token) => token.replaceAll('~1', '/').replaceAll('~0', '~')),
    ];
    const key = tokens.pop()!;
    const parent = tokens.reduce<any>((node, token) => node?.[token], root);
    if (typeof parent !== 'object' || parent === null) throw new KubeError(422, 'Invalid', `json patch path "${pointer}" does not exist`);
    const index = Array.isArray(parent) ? (key === '-' ? parent.length : Number(key)) : undefined;
    return { parent, key, index, exists: key in parent };
  };
  const remove = (pointer: unknown) => {
    const at = locate(pointer);
    if (!at.exists) throw new KubeError(422, 'Invalid', `json patch remove: "${pointer}" does not exist`);
    const value = at.parent[at.key];
    if (at.index !== undefined) at.parent.splice(at.index, 1);
    else delete at.parent[at.key];
    return value;
  };
  const add = (pointer: unknown, value: unknown) => {
    const at = locate(pointer);
    if (at.index !== undefined) at.parent.splice(at.index, 0, copy(value));
    else at.parent[at.key] = copy(value);
  };
  for (const { op, path, from, value } of operations) {
    if (op === 'add') add(path, value);
    else if (op === 'remove') remove(path);
    else if (op === 'replace') (remove(path), add(path, value));
    else if (op === 'move') add(path, remove(from));
    else if (op === 'copy') add(path, (({ parent, key }) => parent[key])(locate(from)));
    else if (op === 'test') {
      const at = locate(path);
      if (JSON.stringify(at.parent[at.key]) !== JSON.stringify(value)) throw new KubeError(422, 'Invalid', `json patch test failed at "${path}"`);
    } else throw badRequest(`json patch: unknown operation "${op}"`);
  }
  return root.value;
}

function applyPatch(contentType: string, document: unknown, patch: unknown): unknown {
  switch (contentType.split(';')[0].trim()) {
    case 'application/json-patch+json':
      return jsonPatch(document, patch);
    case 'application/merge-patch+json':
    case 'application/strategic-merge-patch+json':
      return mergePatch(document, patch);
    default:
      throw unsupportedMediaType(['application/json-patch+json', 'application/merge-patch+json', 'application/strategic-merge-patch+json']);
  }
}

function scaleOf(object: KubeObject) {
  const { name, namespace, uid, resourceVersion, creationTimestamp } = object.metadata;
  const selector = Object.entries<string>(object.spec?.selector?.matchLabels ?? {})
    .map(([key, value]) => `${key}=${value}`)
    .join(',');
  return {
    kind: 'Scale',
    apiVersion: 'autoscaling/v1',
    metadata: { name, namespace, uid, resourceVersion, creationTimestamp },
    spec: { replicas: object.spec?.replicas },
    status: { replicas: object.status?.replicas ?? 0, selector },
  };
}

/** The JSON body of a request; an empty body is `{}` where one is optional (DeleteOptions). */
async function readObject(req: IncomingMessage, optional = false): Promise<unknown> {
  const contentType = req.headers['content-type'] ?? 'application/json';
  if (contentType.includes('protobuf') || contentType.includes('yaml')) throw unsupportedMediaType(['application/json']);
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  if (optional && chunks.length === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (error) {
    throw badRequest(`couldn't get version/kind; json parse error: ${(error as Error).message}`);
  }
}

/** Checks a request body is an object of the endpoint's kind, filling in kind and apiVersion when absent as the apiserver's decoder does. */
function asObjectOf(kind: string, apiVersion: string, body: unknown): KubeObject {
  if (!isPlainObject(body)) throw badRequest(`couldn't get version/kind; json parse error: body is not a JSON object`);
  if (body.apiVersion !== undefined && body.apiVersion !== apiVersion) {
    throw badRequest(`the API version in the data (${body.apiVersion}) does not match the expected API version (${apiVersion})`);
  }
  if (body.kind !== undefined && body.kind !== kind) throw badRequest(`${body.kind} in version "${apiVersion}" cannot be handled as a ${kind}`);
  const metadata = body.metadata ?? {};
  if (!isPlainObject(metadata)) throw badRequest('metadata must be an object');
  return { ...body, apiVersion, kind, metadata } as KubeObject;
}

/** What a handler needs of a request. */
interface Call {
  req: IncomingMessage;
  res: ServerResponse;
  query: URLSearchParams;
}

/** An object or one of its subresources, as named by a URL. */
interface Target {
  type: ResourceType;
  namespace?: string;
  name: string;
  subresource?: string;
}

/** Strips what list items do not carry on the wire: kind and apiVersion are on the list only. */
const listItem = ({ kind: _kind, apiVersion: _apiVersion, ...item }: KubeObject) => item;

export async function startKubeApiServer(options: { token?: string; nodes?: NodeSeed[] } = {}): Promise<KubeApiServer> {
  const token = options.token ?? randomBytes(24).toString('base64url');
  const cluster = new Cluster();
  for (const name of ['default', 'kube-system', 'kube-public', 'kube-node-lease']) cluster.create(NAMESPACES, undefined, { metadata: { name } });
  options.nodes?.forEach((seed, index) => cluster.seed('Node', nodeObject(seed, index)));
  const requests: KubeApiServer['requests'] = [];
  const terminalSizes: KubeApiServer['terminalSizes'] = [];
  const webSockets = new WebSocketServer({ noServer: true, handleProtocols: (offered) => [...offered].find((p) => EXEC_PROTOCOLS.includes(p)) ?? false });

  const authorized = (req: IncomingMessage) => req.headers.authorization === `Bearer ${token}`;
  const record = (req: IncomingMessage) => requests.push({ method: req.method ?? 'GET', path: req.url ?? '/', headers: { ...req.headers } });

  function send(res: ServerResponse, code: number, body: unknown): void {
    res.writeHead(code, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method ?? 'GET';
    const segments = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    if (!authorized(req)) throw new KubeError(401, 'Unauthorized', 'Unauthorized');
    const proxied = SERVICE_PROXY.exec(url.pathname);
    if (proxied) return proxyToService(req, res, url, proxied);
    const path = url.pathname.replace(/\/$/, '');
    // Discovery (k8s.io/client-go/discovery): kubectl asks /api and /apis for the
    // aggregated APIGroupDiscoveryList first and falls back to these documents.
    if (method === 'GET' && path === '/version') return send(res, 200, SERVER_VERSION);
    if (method === 'GET' && path === '/api') {
      const serverAddressByClientCIDRs = [{ clientCIDR: '0.0.0.0/0', serverAddress: req.headers.host }];
      return send(res, 200, { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs });
    }
    if (method === 'GET' && path === '/apis') return send(res, 200, apiGroupList());
    // /api/v1/... for the core group, /apis/<group>/<version>/... for the others.
    const [group, version, rest] = segments[0] === 'api' ? ['', segments[1], segments.slice(2)] : [segments[1], segments[2], segments.slice(3)];
    if (!['api', 'apis'].includes(segments[0]) || !RESOURCES.some((type) => type.group === group && type.version === version)) throw pageNotFound();
    if (rest.length === 0) {
      if (method !== 'GET') throw methodNotAllowed();
      return send(res, 200, apiResourceList(group, version));
    }
    const find = (plural: string | undefined) => RESOURCES.find((type) => type.group === group && type.version === version && type.plural === plural);
    let namespace: string | undefined;
    let route = rest;
    if (route[0] === 'namespaces' && route.length >= 3 && find(route[2])?.namespaced) [namespace, route] = [route[1], route.slice(2)];
    const type = find(route[0]);
    const [, name, subresource] = route;
    if (!type || route.length > 3 || (type.namespaced && namespace === undefined && name !== undefined)) throw pageNotFound();
    if (subresource !== undefined && !type.subresources.includes(subresource)) throw pageNotFound();
    const call = { req, res, query: url.searchParams };
    if (name === undefined) return collection(call, type, namespace);
    if (subresource === 'log') return streamLog(call, namespace!, name);
    if (subresource === 'exec') throw badRequest('Upgrade request required');
    return item(call, { type, namespace, name, subresource });
  }

  async function collection({ req, res, query }: Call, type: ResourceType, namespace: string | undefined): Promise<void> {
    if (req.method === 'POST') {
      if (type.namespaced && namespace === undefined) throw methodNotAllowed();
      const body = asObjectOf(type.kind, apiVersionOf(type), await readObject(req));
      if (body.metadata.namespace !== undefined && body.metadata.namespace !== namespace) {
        throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
      }
      return send(res, 201, cluster.create(type, namespace, body));
    }
    const listing = listingOf(type, namespace, query);
    if (req.method === 'GET' && query.get('watch') === 'true') return watch(res, query, listing, type === PODS && wantsTable(req));
    if (req.method !== 'GET' && req.method !== 'DELETE') throw methodNotAllowed();
    const items = cluster.list(listing);
    if (req.method === 'DELETE') for (const object of items) cluster.delete(type, object, query.get('propagationPolicy') ?? 'Background');
    const resourceVersion = cluster.resourceVersion;
    if (req.method === 'GET' && type === PODS && wantsTable(req)) return send(res, 200, podTable(items, resourceVersion, query.get('includeObject')));
    send(res, 200, { kind: `${type.kind}List`, apiVersion: apiVersionOf(type), metadata: { resourceVersion }, items: items.map(listItem) });
  }

  /** Newline-delimited watch events; from the current state (as ADDED) unless a resourceVersion says where to resume. */
  function watch(res: ServerResponse, query: URLSearchParams, listing: Listing, asTable: boolean): void {
    res.writeHead(200, { 'Content-Type': 'application/json' }).flushHeaders();
    const since = Number(query.get('resourceVersion') || '0');
    const initial =
      since === 0
        ? cluster.list(listing).map((object) => ({ type: 'ADDED', object }))
        : cluster.changesSince(since).flatMap((change) => eventFor(listing, change) ?? []);
    const watcher = {
      listing,
      send: ({ type, object }: { type: string; object: KubeObject }) => {
        const printed = asTable ? podTable([object], object.metadata.resourceVersion!, query.get('includeObject')) : object;
        res.write(`${JSON.stringify({ type, object: printed })}\n`);
      },
      end: () => res.end(),
    };
    initial.forEach(watcher.send);
    cluster.watches.add(watcher);
    const timeout = query.get('timeoutSeconds') ? setTimeout(() => res.end(), Number(query.get('timeoutSeconds')) * 1000) : undefined;
    res.on('close', () => {
      clearTimeout(timeout);
      cluster.watches.delete(watcher);
    });
  }

  async function item({ req, res, query }: Call, { type, namespace, name, subresource }: Target): Promise<void> {
    const current = cluster.get(type, namespace, name);
    const writesScale = subresource === 'scale';
    const part = subresource === 'status' ? 'status' : 'object';
    const [kind, apiVersion] = writesScale ? ['Scale', 'autoscaling/v1'] : [type.kind, apiVersionOf(type)];
    const view = writesScale ? scaleOf(current) : current;
    const write = (body: unknown) => {
      const incoming = asObjectOf(kind, apiVersion, body);
      if (!writesScale) return cluster.update(type, current, incoming, part);
      const replicas = incoming.spec?.replicas;
      if (!Number.isInteger(replicas) || replicas < 0) {
        const message = `Invalid value: ${replicas}: must be greater than or equal to 0`;
        throw invalid({ ...type, kind: 'Scale' }, name, [{ field: 'spec.replicas', reason: 'FieldValueInvalid', message }]);
      }
      const metadata = { ...current.metadata, name: incoming.metadata.name, resourceVersion: incoming.metadata.resourceVersion };
      return scaleOf(cluster.update(type, current, { ...current, metadata, spec: { ...current.spec, replicas } }, 'object'));
    };
    switch (req.method) {
      case 'GET':
        if (subresource || type !== PODS || !wantsTable(req)) return send(res, 200, view);
        return send(res, 200, podTable([current], cluster.resourceVersion, query.get('includeObject')));
      case 'PUT':
        return send(res, 200, write(await readObject(req)));
      case 'PATCH':
        return send(res, 200, write(applyPatch(req.headers['content-type'] ?? '', view, await readObject(req))));
      case 'DELETE': {
        if (subresource) throw methodNotAllowed();
        const options = await readObject(req, true);
        // Jobs default to orphaning their pods, kept from batch/v1's first release; kubectl asks for Background.
        const propagation =
          query.get('propagationPolicy') ?? (isPlainObject(options) ? options.propagationPolicy : undefined) ?? (type.kind === 'Job' ? 'Orphan' : 'Background');
        const deleted = cluster.delete(type, current, String(propagation));
        // Pods, services and namespaces answer with the object, the other registries with a Status.
        if (['Pod', 'Service', 'Namespace'].includes(type.kind)) return send(res, 200, deleted);
        const details = { ...detailsOf(type, name), uid: deleted.metadata.uid };
        return send(res, 200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details });
      }
      default:
        throw methodNotAllowed();
    }
  }

  /** The container a log request or appendLog means: the one named, else the pod's only (or, for appendLog, first) one. */
  function containerOf(pod: KubeObject, requested: string | null | undefined, strict: boolean): string {
    const names: string[] = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].map((container: any) => container.name);
    if (requested) {
      if (!names.includes(requested)) throw badRequest(`container ${requested} is not valid for pod ${pod.metadata.name}`);
      return requested;
    }
    const containers: string[] = (pod.spec?.containers ?? []).map((container: any) => container.name);
    if (strict && containers.length > 1) {
      throw badRequest(`a container name must be specified for pod ${pod.metadata.name}, choose one of: [${containers.join(' ')}]`);
    }
    return containers[0];
  }

  function streamLog({ res, query }: Call, namespace: string, name: string): void {
    const pod = cluster.get(PODS, namespace, name);
    const container = containerOf(pod, query.get('container'), true);
    if (pod.status?.phase === 'Pending') {
      const waiting = pod.status?.containerStatuses?.find((status: any) => status.name === container)?.state?.waiting?.reason ?? 'ContainerCreating';
      throw badRequest(`container "${container}" in pod "${name}" is waiting to start: ${waiting}`);
    }
    const log = cluster.logOf(namespace, name, container);
    const tailLines = query.get('tailLines');
    const lines = log.text.split(/(?<=\n)/).filter(Boolean);
    res.writeHead(200, { 'Content-Type': 'text/plain' }).flushHeaders();
    res.write(tailLines === null ? log.text : lines.slice(Math.max(0, lines.length - Number(tailLines))).join(''));
    if (query.get('follow') !== 'true' || log.ended) return void res.end();
    log.followers.add(res);
    res.on('close', () => log.followers.delete(res));
  }

  /**
   * The exec subresource over WebSocket (the channel.k8s.io protocols): a minimal
   * `cat`, echoing stdin (channel 0) to stdout (channel 1); when v5's close frame
   * ends stdin, it reports a Success status on channel 3 and closes. With `tty=true`,
   * Ctrl-D (0x04) ends it too, as a terminal's line discipline would, and the sizes
   * sent on channel 4 are recorded (terminalSizes). Two commands end at once with an
   * exit status instead (exitStatusOf): `false`, and `sh -c 'exit N'`.
   */
  function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    record(req);
    const refuse = (error: KubeError) => {
      const body = JSON.stringify(statusBody(error));
      const headers = `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close`;
      socket.end(`HTTP/1.1 ${error.code} ${STATUS_CODES[error.code]}\r\n${headers}\r\n\r\n${body}`);
    };
    const url = new URL(req.url ?? '/', 'http://localhost');
    const match = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/exec$/.exec(url.pathname);
    if (!authorized(req)) return refuse(new KubeError(401, 'Unauthorized', 'Unauthorized'));
    const proxied = SERVICE_PROXY.exec(url.pathname);
    if (proxied) {
      let target: URL;
      try {
        target = serviceBackend(proxied);
      } catch (error) {
        return refuse(error as KubeError);
      }
      // As UpgradeAwareHandler: the request goes to an endpoint as it came (without the caller's
      // credentials), then the bytes flow both ways, the endpoint's 101 included.
      const backend = connect(Number(target.port), target.hostname, () => {
        let request = `${req.method ?? 'GET'} ${proxied[3] || '/'}${url.search} HTTP/1.1\r\nHost: ${target.host}\r\n`;
        for (let i = 0; i < req.rawHeaders.length; i += 2) {
          const name = req.rawHeaders[i]!.toLowerCase();
          if (name !== 'authorization' && name !== 'host') request += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
        }
        backend.write(`${request}\r\n`);
        if (head.length > 0) backend.write(head);
        socket.pipe(backend);
        backend.pipe(socket);
      });
      backend.on('error', (error) => (socket.writable ? refuse(unreachable(error)) : socket.destroy()));
      backend.on('close', () => socket.destroy());
      socket.on('close', () => backend.destroy());
      socket.on('error', () => backend.destroy());
      return;
    }
    if (!match) return refuse(pageNotFound());
    if (req.headers.upgrade?.toLowerCase() !== 'websocket') {
      return refuse(badRequest(`unable to upgrade: ${req.headers.upgrade} is not supported here, only websocket`));
    }
    try {
      cluster.get(PODS, decodeURIComponent(match[1]), decodeURIComponent(match[2]));
    } catch (error) {
      return refuse(error as KubeError);
    }
    if (url.searchParams.getAll('command').length === 0) return refuse(badRequest('you must specify at least 1 command'));
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    if (!offered.some((p) => EXEC_PROTOCOLS.includes(p))) return refuse(badRequest(`unable to upgrade: no supported protocol among [${offered.join(' ')}]`));
    const exited = exitStatusOf(url.searchParams.getAll('command'));
    webSockets.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      if (exited !== null) {
        ws.send(Buffer.concat([Buffer.from([3]), Buffer.from(JSON.stringify(exited))]));
        return ws.close(1000);
      }
      const tty = url.searchParams.get('tty') === 'true';
      const succeed = () => {
        ws.send(Buffer.concat([Buffer.from([3]), Buffer.from(JSON.stringify({ metadata: {}, status: 'Success' }))]));
        ws.close(1000);
      };
      ws.on('message', (data: Buffer) => {
        if (data[0] === 0) {
          const end = tty ? data.indexOf(4, 1) : -1;
          ws.send(Buffer.concat([Buffer.from([1]), data.subarray(1, end === -1 ? undefined : end)]));
          if (end !== -1) succeed();
        }
        if (data[0] === 4 && tty) {
          const { Width, Height } = JSON.parse(data.subarray(1).toString('utf8')) as { Width: number; Height: number };
          terminalSizes.push({ pod: decodeURIComponent(match[2]!), width: Width, height: Height });
        }
        if (data[0] === 255 && data[1] === 0) succeed();
      });
    });
  }

  /**
   * The service proxy's endpoint for `/api/v1/namespaces/<ns>/services/[<scheme>:]<name>[:<port>]/proxy`:
   * the port by number or name (the only one when not given), served where serveService said.
   */
  const backends = new Map<string, string>();
  function serviceBackend([, rawNamespace, rawReference]: RegExpExecArray): URL {
    const reference = decodeURIComponent(rawReference!);
    const parts = reference.split(':');
    const [scheme, name, port] = parts.length === 3 ? parts : parts.length === 2 ? ['', parts[0], parts[1]] : ['', parts[0], ''];
    if (scheme && scheme !== 'http') throw badRequest(`the test double proxies to http endpoints only, not ${scheme}`);
    const namespace = decodeURIComponent(rawNamespace!);
    const service = cluster.get(SERVICES, namespace, name!);
    const ports: { name?: string; port: number }[] = service.spec?.ports ?? [];
    const servicePort = port === '' ? (ports.length === 1 ? ports[0] : undefined) : ports.find((p) => String(p.port) === port || p.name === port);
    const target = servicePort && backends.get(`${namespace}/${name}/${servicePort.port}`);
    if (!target) throw new KubeError(503, 'ServiceUnavailable', `no endpoints available for service "${reference}"`);
    return new URL(target);
  }
  const unreachable = (error: Error) => new KubeError(503, 'ServiceUnavailable', `error trying to reach service: ${error.message}`);

  /**
   * The service proxy (k8s.io/apimachinery/pkg/util/proxy): the request goes to the endpoint without
   * the caller's credentials; the answer comes back without CORS headers, with redirects and the links
   * of HTML pages (href, src, action and formaction of tags, path-absolute or to the endpoint's host)
   * moved under the proxy path, as transport.go does. Unlike the real one, it does not parse HTML: a
   * tag-like text inside a script would be rewritten too.
   */
  async function proxyToService(req: IncomingMessage, res: ServerResponse, url: URL, proxied: RegExpExecArray): Promise<void> {
    const target = serviceBackend(proxied);
    const rest = proxied[3] ?? '';
    const pathPrepend = url.pathname.slice(0, url.pathname.length - rest.length);
    const headers: OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined && !['authorization', 'host', 'connection', 'keep-alive', 'transfer-encoding', 'upgrade'].includes(name)) headers[name] = value;
    }
    headers['x-forwarded-uri'] = `${pathPrepend}${rest || '/'}`;
    const rewrite = (link: string): string => {
      let path = link;
      const absolute = /^([a-z][a-z0-9+.-]*:)?\/\/([^/?#]*)(.*)$/i.exec(link);
      if (absolute) {
        if (absolute[2] !== target.host && absolute[2] !== req.headers.host) return link;
        path = absolute[3] || '/';
      }
      if (!path.startsWith('/') || path.startsWith(pathPrepend)) return link;
      return `${pathPrepend}${path}`;
    };
    await new Promise<void>((resolve, reject) => {
      const upstream = httpRequest(
        { host: target.hostname, port: target.port, method: req.method, path: `${rest || '/'}${url.search}`, headers },
        (response) => {
          const out: OutgoingHttpHeaders = {};
          for (const [name, value] of Object.entries(response.headers)) {
            if (value !== undefined && !name.startsWith('access-control-') && !['connection', 'keep-alive', 'transfer-encoding'].includes(name))
              out[name] = value;
          }
          if (typeof out['location'] === 'string') out['location'] = rewrite(out['location']);
          const type = String(out['content-type'] ?? '')
            .split(';')[0]!
            .trim();
          const encoding = String(out['content-encoding'] ?? '');
          if (type !== 'text/html' || !['', 'gzip', 'deflate'].includes(encoding)) {
            res.writeHead(response.statusCode ?? 502, out);
            response.pipe(res);
            response.on('end', resolve);
            return;
          }
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () => {
            const raw = Buffer.concat(chunks);
            const html = (encoding === 'gzip' ? zlib.gunzipSync(raw) : encoding === 'deflate' ? zlib.inflateSync(raw) : raw).toString('utf8');
            const rewritten = html.replace(/<[a-zA-Z][^<>]*>/g, (tag) =>
              tag.replace(
                /(\s)(href|src|action|formaction)\s*=\s*(?:"([^"]*)"|'([^']*)')/gi,
                (_all, space: string, name: string, double?: string, single?: string) => `${space}${name}="${rewrite(double ?? single ?? '')}"`,
              ),
            );
            const body = encoding === 'gzip' ? zlib.gzipSync(rewritten) : encoding === 'deflate' ? zlib.deflateSync(rewritten) : Buffer.from(rewritten);
            res.writeHead(response.statusCode ?? 502, { ...out, 'content-length': String(body.length) });
            res.end(body);
            resolve();
          });
        },
      );
      upstream.on('error', (error) => reject(unreachable(error)));
      req.pipe(upstream);
    });
  }

  const listener: RequestListener = (req, res) => {
    record(req);
    handle(req, res).catch((error: unknown) => {
      const failure = error instanceof KubeError ? error : new KubeError(500, 'InternalError', `Internal error occurred: ${(error as Error).message}`);
      if (!res.headersSent) send(res, failure.code, statusBody(failure));
      else res.end();
    });
  };
  const servers = [createServer(listener), createTlsServer(TEST_TLS, listener)];
  const [port, tlsPort] = await Promise.all(
    servers.map((server) => {
      server.on('upgrade', upgrade);
      return new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
    }),
  );

  return {
    url: `http://127.0.0.1:${port}`,
    httpsUrl: `https://127.0.0.1:${tlsPort}`,
    token,
    requests,
    terminalSizes,
    objects(kind, namespace) {
      const type = byKind(kind);
      if (!type) throw new Error(`kubeApiServer does not serve kind ${kind}`);
      return cluster.list({ type, namespace, matches: (object) => namespace === undefined || object.metadata.namespace === namespace }).map(copy);
    },
    appendLog(namespace, pod, text, container) {
      const name = container ?? containerOf(cluster.get(PODS, namespace, pod), undefined, false);
      const log = cluster.logOf(namespace, pod, name);
      const lines = text.endsWith('\n') ? text : `${text}\n`;
      log.text += lines;
      for (const follower of log.followers) follower.write(lines);
    },
    serveService(namespace, name, port, target) {
      backends.set(`${namespace}/${name}/${port}`, target);
    },
    endLog(namespace, pod, container) {
      const name = container ?? containerOf(cluster.get(PODS, namespace, pod), undefined, false);
      const log = cluster.logOf(namespace, pod, name);
      log.ended = true;
      for (const follower of log.followers) follower.end();
    },
    async close() {
      for (const watcher of cluster.watches) watcher.end();
      for (const log of cluster.logs.values()) for (const follower of log.followers) follower.end();
      for (const client of webSockets.clients) client.terminate();
      await Promise.all(
        servers.map(
          (server) =>
            new Promise<void>((resolve) => {
              server.close(() => resolve());
              server.closeAllConnections();
            }),
        ),
      );
    },
  };
}

/** Whether the client accepts a meta.k8s.io/v1 Table, as kubectl get does. */
function wantsTable(req: IncomingMessage): boolean {
  const accepted = (req.headers.accept ?? '').replace(/\s/g, '').split(',');
  return accepted.some((type) => type.includes('as=Table') && type.includes('g=meta.k8s.io') && /;v=v1(;|$)/.test(type));
}

/** A request to this server as its administrator, as a test seeds it (`kubectl apply`); a refusal throws with the Status. */
export async function kubeRequest(server: Pick<KubeApiServer, 'url' | 'token'>, method: string, apiPath: string, body?: unknown): Promise<any> {
  const response = await fetch(`${server.url}${apiPath}`, {
    method,
    headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const json = await response.json();
  if (!response.ok) throw new Error(`${method} ${apiPath}: ${response.status} ${JSON.stringify(json)}`);
  return json;
}

/** Credentials for this server as an agent would hold them (client-node needs skipTLSVerify for http). */
export function kubeConfigFor(server: Pick<KubeApiServer, 'url' | 'token'>): KubeConfig {
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'test', server: server.url, skipTLSVerify: true }],
    users: [{ name: 'agent', token: server.token }],
    contexts: [{ name: 'test', cluster: 'test', user: 'agent' }],
    currentContext: 'test',
  });
  return kubeConfig;
}
