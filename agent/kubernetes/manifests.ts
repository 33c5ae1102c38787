/**
 * The manifests the agent sends to its cluster, and the check every one of them passes first.
 *
 * kubernetes-models validates a manifest against the Kubernetes OpenAPI schema of its kind, but the
 * package ships that schema only as compiled validators (AJV standalone code in
 * `kubernetes-models/_schemas/*.js` and `@kubernetes-models/apimachinery/_schemas/*.js`; no JSON
 * schema files), and those never look at a property the schema does not define: a typo such as
 * `imagePullPolcy` passes, and the apiserver then drops it silently. So `validateManifest` runs the
 * kind's own validator over a traced copy of the manifest and records which properties it reads:
 * a compiled validator reads every property its schema defines (`data.name`, `data.image`, ...),
 * enumerates the keys of a free-form map (labels, annotations, data, resources.limits: schemas with
 * `additionalProperties`), and reads nothing inside an object its schema leaves open (`type: object`
 * without properties, e.g. FieldsV1 or `x-kubernetes-preserve-unknown-fields`). A property of a
 * structured object that the validator never read is therefore one its schema does not define.
 */
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { ConfigMap, type IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';

/** One thing wrong with a manifest: where (`spec.template.spec.containers[0].image`) and what. */
export interface ManifestProblem {
  path: string;
  message: string;
}

/** A manifest that does not match the schema of its kind; `problems` lists every mismatch found. */
export class InvalidManifestError extends Error {
  readonly problems: ManifestProblem[];

  constructor(subject: string, problems: ManifestProblem[]) {
    super(`Invalid ${subject}: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`);
    this.name = 'InvalidManifestError';
    this.problems = problems;
  }
}

/** The label every object the agent creates carries (Kubernetes recommended labels). */
export const MANAGED_BY_LABELS = { 'app.kubernetes.io/managed-by': 'mariner' } as const;

/** kubernetes-models sets each class's prototype.validate to its compiled schema validator. */
interface ModelClass {
  prototype: { validate(): void };
}

/**
 * The kinds the agent produces, and those the Helm chart renders (test/helmChart.test.ts checks every
 * chart manifest here too); a manifest of any other kind is refused rather than sent unchecked.
 */
const MODEL_CLASSES: Record<string, ModelClass> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Namespace': Namespace,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'v1/Pod': Pod,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'batch/v1/Job': Job,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'networking.k8s.io/v1/Ingress': Ingress,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
};

/** The kinds `validateManifest` knows, as `apiVersion/kind`. */
export const VALIDATED_KINDS: readonly string[] = Object.keys(MODEL_CLASSES);

/**
 * Checks a manifest against the Kubernetes schema of its apiVersion and kind: types, enums and
 * required fields (kubernetes-models), and no field the schema does not define. Returns the
 * manifest unchanged; throws InvalidManifestError naming the path of every bad field.
 */
export function validateManifest<T extends object>(manifest: T): T {
  const { apiVersion, kind, metadata } = manifest as { apiVersion?: unknown; kind?: unknown; metadata?: { name?: unknown } };
  const subject = `${typeof kind === 'string' ? kind : 'manifest'}${typeof metadata?.name === 'string' ? ` "${metadata.name}"` : ''}`;
  const model = MODEL_CLASSES[`${String(apiVersion)}/${String(kind)}`];
  if (!model) {
    throw new InvalidManifestError(subject, [
      { path: 'kind', message: `no schema for apiVersion "${String(apiVersion)}" kind "${String(kind)}" (known: ${VALIDATED_KINDS.join(', ')})` },
    ]);
  }

  const trace = newTrace();
  const problems: ManifestProblem[] = [];
  try {
    model.prototype.validate.call(traced(manifest, trace));
  } catch (error) {
    const errors = (error as { errors?: unknown }).errors;
    if (!Array.isArray(errors)) throw error;
    for (const e of errors as { instancePath: string; message?: string }[]) {
      problems.push({ path: pathOfPointer(manifest, e.instancePath), message: e.message ?? 'is invalid' });
    }
  }
  collectUnknownFields(manifest, trace, [], problems);
  if (problems.length > 0) throw new InvalidManifestError(subject, problems);
  return manifest;
}

/** What the validator did with one object or array of the manifest. */
interface Trace {
  reads: Set<string>;
  enumerated: boolean;
  children: Map<string, Trace>;
}

function newTrace(): Trace {
  return { reads: new Set(), enumerated: false, children: new Map() };
}

function isPlainData(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false;
  if (Array.isArray(value)) return true;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * A proxy over a shallow copy of `value` (a copy, so that frozen manifests do not trip the proxy
 * invariants) that records reads and enumerations in `trace`, and hands out traced children.
 */
function traced(value: object, trace: Trace): object {
  const target: object = Array.isArray(value) ? [...value] : { ...value };
  const childProxies = new Map<string, object>();
  return new Proxy(target, {
    get(t, key, receiver) {
      const child: unknown = Reflect.get(t, key, receiver);
      if (typeof key !== 'string') return child;
      trace.reads.add(key);
      if (!isPlainData(child) || !Object.hasOwn(t, key)) return child;
      let proxy = childProxies.get(key);
      if (!proxy) {
        const childTrace = newTrace();
        trace.children.set(key, childTrace);
        proxy = traced(child, childTrace);
        childProxies.set(key, proxy);
      }
      return proxy;
    },
    ownKeys(t) {
      trace.enumerated = true;
      return Reflect.ownKeys(t);
    },
  });
}

function collectUnknownFields(value: unknown, trace: Trace, path: (string | number)[], problems: ManifestProblem[]): void {
  if (!isPlainData(value)) return;
  const isArray = Array.isArray(value);
  // A structured object: its validator read properties by name and never enumerated it.
  if (!isArray && trace.reads.size > 0 && !trace.enumerated) {
    for (const key of Object.keys(value)) {
      if (value[key] !== undefined && !trace.reads.has(key)) {
        problems.push({ path: formatPath([...path, key]), message: 'unknown field' });
      }
    }
  }
  for (const [key, childTrace] of trace.children) {
    const child = (value as Record<string, unknown>)[key];
    collectUnknownFields(child, childTrace, [...path, isArray ? Number(key) : key], problems);
  }
}

/** `spec.template.spec.containers[0].image`; keys that are not identifiers as `labels["a/b"]`. */
function formatPath(path: (string | number)[]): string {
  if (path.length === 0) return '(root)';
  let text = '';
  for (const segment of path) {
    if (typeof segment === 'number') text += `[${segment}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(segment)) text += text === '' ? segment : `.${segment}`;
    else text += `[${JSON.stringify(segment)}]`;
  }
  return text;
}

/** An AJV instancePath (a JSON pointer, RFC 6901) as a formatted path, indexes shown as `[i]`. */
function pathOfPointer(root: unknown, pointer: string): string {
  const path: (string | number)[] = [];
  let node: unknown = root;
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    const isIndex = Array.isArray(node);
    path.push(isIndex ? Number(key) : key);
    node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined;
  }
  return formatPath(path);
}

/** The data key of the device plugin ConfigMap: the GPU operator's `devicePlugin.config.default`. */
export const DEVICE_PLUGIN_CONFIG_KEY = 'any';

export interface DeviceConfigMapOptions {
  /** Where the NVIDIA GPU operator runs; default `nvidia-gpu-operator`. */
  namespace?: string;
  /** Default `mariner-device-plugin-config`; the ClusterPolicy's `devicePlugin.config.name`. */
  name?: string;
  /** How many pods may share one GPU (time slicing); null: no sharing. */
  timeSlicingGpus: number | null;
}

function deviceConfigMapDefaults(options: DeviceConfigMapOptions): Required<DeviceConfigMapOptions> {
  return {
    namespace: options.namespace ?? 'nvidia-gpu-operator',
    name: options.name ?? 'mariner-device-plugin-config',
    timeSlicingGpus: options.timeSlicingGpus,
  };
}

/**
 * The NVIDIA device plugin's configuration as a ConfigMap: how a cluster's GPU config
 * (LLMariner: `device_plugin_config.time_slicing.gpus`) reaches its nodes. The device plugin reads
 * the YAML in `data.any` (NVIDIA k8s-device-plugin, api/config/v1: `version: v1`,
 * `sharing.timeSlicing.resources[].replicas`, which must be > 0).
 */
export function deviceConfigMap(options: DeviceConfigMapOptions): IConfigMap {
  const { namespace, name, timeSlicingGpus } = deviceConfigMapDefaults(options);
  if (timeSlicingGpus !== null && !(Number.isInteger(timeSlicingGpus) && timeSlicingGpus > 0)) {
    throw new RangeError(`time slicing replicas must be a positive integer, got ${timeSlicingGpus}`);
  }
  const config =
    timeSlicingGpus === null
      ? 'version: v1\n'
      : ['version: v1', 'sharing:', '  timeSlicing:', '    resources:', '      - name: nvidia.com/gpu', `        replicas: ${timeSlicingGpus}`, ''].join('\n');
  return validateManifest<IConfigMap>({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name, namespace, labels: { ...MANAGED_BY_LABELS } },
    data: { [DEVICE_PLUGIN_CONFIG_KEY]: config },
  });
}
