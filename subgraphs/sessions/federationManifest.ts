import * as k8s from '@kubernetes/client-node';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { randomString } from '../../lib/ids.js';
import { FEDERATED_LABEL } from './federationPlacement.js';
import type { KubeObject } from './federationStore.js';

/**
 * What a Job submitted to the virtual cluster `federated` must be before it is created on a cluster with
 * the agent's account. The schema check is the one every manifest the agent sends passes
 * (agent/kubernetes/manifests.ts `validateManifest`, which a subgraph may not import: test/layering.test.ts):
 * types, enums and required fields by kubernetes-models' validator of batch/v1 Job, and no field the
 * Kubernetes API does not define (a typo such as `backofLimit`, which the apiserver would drop silently),
 * read from @kubernetes/client-node's model of each type. On top of it, the same boundary as the Kubernetes API allow-list (kubeAllowList.ts): the agent's account must not
 * lend a project member more than their own work needs, so a pod that reads Secrets, runs as another
 * service account or reaches into the node is refused, and the service account token is not mounted.
 */

/** A refusal, answered as the apiserver answers: a Status with its reason (and the fields at fault). */
export class ManifestRefusal extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly causes: { field: string; message: string }[] = [],
  ) {
    super(message);
  }

  get status(): KubeObject {
    return {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: this.message,
      reason: this.reason,
      code: this.code,
      ...(this.causes.length > 0
        ? { details: { kind: 'jobs', group: 'batch', causes: this.causes.map((c) => ({ reason: 'FieldValueForbidden', ...c })) } }
        : {}),
    };
  }
}

/** A DNS-1123 label: a Job's name becomes its pods' `job-name` label, so it is at most 63 characters. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/**
 * The manifest to create for a submitted body in `namespace`: checked, its metadata reduced to name,
 * namespace, labels and annotations (and `generateName` resolved), the federation's label added.
 * Throws ManifestRefusal.
 */
export function federatedJobManifest(body: unknown, namespace: string, rowLabel: string): KubeObject {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new ManifestRefusal(400, 'BadRequest', 'the request body is not a JSON object');
  const submitted = body as KubeObject;
  if (submitted.apiVersion !== 'batch/v1' || submitted.kind !== 'Job') {
    throw new ManifestRefusal(
      400,
      'BadRequest',
      `the federated cluster takes batch/v1 Jobs only, not ${String(submitted.apiVersion)} ${String(submitted.kind)}`,
    );
  }
  const metadata = (submitted.metadata ?? {}) as Record<string, unknown>;
  if (metadata['namespace'] !== undefined && metadata['namespace'] !== namespace) {
    throw new ManifestRefusal(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request');
  }
  let name = metadata['name'];
  if (name === undefined && typeof metadata['generateName'] === 'string') name = `${metadata['generateName']}${randomString(5).toLowerCase()}`;
  if (typeof name !== 'string' || !DNS_LABEL.test(name)) {
    throw new ManifestRefusal(
      422,
      'Invalid',
      `Job.batch "${String(name ?? '')}" is invalid: metadata.name: a lowercase RFC 1123 label of at most 63 characters is required`,
      [{ field: 'metadata.name', message: 'a lowercase RFC 1123 label of at most 63 characters is required' }],
    );
  }
  const labels = { ...((metadata['labels'] as Record<string, string> | undefined) ?? {}) };
  const annotations = { ...((metadata['annotations'] as Record<string, string> | undefined) ?? {}) };
  const causes: { field: string; message: string }[] = [];
  for (const [where, map] of [
    ['labels', labels],
    ['annotations', annotations],
  ] as const) {
    for (const key of Object.keys(map)) {
      if (key.includes('mariner.dev/')) causes.push({ field: `metadata.${where}.${key}`, message: 'keys under mariner.dev/ are the platform’s own' });
    }
  }
  if (labels['app.kubernetes.io/managed-by'] === 'mariner') {
    causes.push({ field: 'metadata.labels.app.kubernetes.io/managed-by', message: 'the agent manages the objects it made: "mariner" is its own' });
  }
  const manifest: KubeObject = {
    ...submitted,
    metadata: { name, namespace, labels: { ...labels, [FEDERATED_LABEL]: rowLabel }, ...(Object.keys(annotations).length > 0 ? { annotations } : {}) },
  };
  delete manifest['status'];
  const problems = schemaProblems(manifest);
  if (problems.length > 0) {
    throw new ManifestRefusal(422, 'Invalid', `Job.batch "${name}" is invalid: ${problems.map((p) => `${p.field}: ${p.message}`).join('; ')}`, problems);
  }
  causes.push(...podPolicyProblems(manifest));
  if (causes.length > 0) {
    throw new ManifestRefusal(403, 'Forbidden', `Job.batch "${name}" is forbidden: ${causes.map((c) => `${c.field}: ${c.message}`).join('; ')}`, causes);
  }
  // The agent's namespace account token never goes into a user's pod.
  manifest.spec.template.spec.automountServiceAccountToken = false;
  // The pods carry the federation's label too: the endpoint lists a namespace's pods by it, on every cluster.
  const template = manifest.spec.template as { metadata?: { labels?: Record<string, string> } };
  template.metadata = { ...template.metadata, labels: { ...template.metadata?.labels, [FEDERATED_LABEL]: rowLabel } };
  return manifest;
}

/** What the pod template may not do (the Kubernetes API allow-list's boundary, kubeAllowList.ts). */
export function podPolicyProblems(job: KubeObject): { field: string; message: string }[] {
  const pod = (job.spec?.template?.spec ?? {}) as Record<string, any>;
  const base = 'spec.template.spec';
  const problems: { field: string; message: string }[] = [];
  for (const field of ['hostNetwork', 'hostPID', 'hostIPC', 'hostUsers'] as const) {
    if (field === 'hostUsers' ? pod[field] === true : pod[field])
      problems.push({ field: `${base}.${field}`, message: 'the node’s namespaces are not for federated Jobs' });
  }
  for (const field of ['serviceAccountName', 'serviceAccount'] as const) {
    if (pod[field] !== undefined && pod[field] !== 'default')
      problems.push({ field: `${base}.${field}`, message: 'federated Jobs run as the namespace’s default service account' });
  }
  if (pod['nodeName'] !== undefined) problems.push({ field: `${base}.nodeName`, message: 'the scheduler places the pods' });
  ((pod['volumes'] ?? []) as Record<string, any>[]).forEach((volume, i) => {
    const field = `${base}.volumes[${i}]`;
    if (volume['hostPath']) problems.push({ field: `${field}.hostPath`, message: 'host paths are not mounted' });
    if (volume['secret'])
      problems.push({ field: `${field}.secret`, message: 'Secrets are not mounted (they hold the credentials of the platform and of its jobs)' });
    ((volume['projected']?.sources ?? []) as Record<string, unknown>[]).forEach((source, j) => {
      if (source['secret']) problems.push({ field: `${field}.projected.sources[${j}].secret`, message: 'Secrets are not mounted' });
      if (source['serviceAccountToken'])
        problems.push({ field: `${field}.projected.sources[${j}].serviceAccountToken`, message: 'service account tokens are not mounted' });
    });
  });
  for (const list of ['initContainers', 'containers', 'ephemeralContainers'] as const) {
    ((pod[list] ?? []) as Record<string, any>[]).forEach((container, i) => {
      const field = `${base}.${list}[${i}]`;
      const security = (container['securityContext'] ?? {}) as Record<string, any>;
      if (security['privileged']) problems.push({ field: `${field}.securityContext.privileged`, message: 'privileged containers are refused' });
      if (security['allowPrivilegeEscalation'])
        problems.push({ field: `${field}.securityContext.allowPrivilegeEscalation`, message: 'privilege escalation is refused' });
      if ((security['capabilities']?.add ?? []).length > 0)
        problems.push({ field: `${field}.securityContext.capabilities.add`, message: 'added capabilities are refused' });
      ((container['ports'] ?? []) as Record<string, unknown>[]).forEach((port, j) => {
        if (port['hostPort'] !== undefined) problems.push({ field: `${field}.ports[${j}].hostPort`, message: 'host ports are refused' });
      });
      ((container['env'] ?? []) as Record<string, any>[]).forEach((env, j) => {
        if (env['valueFrom']?.secretKeyRef) problems.push({ field: `${field}.env[${j}].valueFrom.secretKeyRef`, message: 'Secrets are not read' });
      });
      ((container['envFrom'] ?? []) as Record<string, unknown>[]).forEach((source, j) => {
        if (source['secretRef']) problems.push({ field: `${field}.envFrom[${j}].secretRef`, message: 'Secrets are not read' });
      });
    });
  }
  return problems;
}

/** The problems of a Job against the Kubernetes schema: kubernetes-models' validator, then unknown fields. */
export function schemaProblems(job: KubeObject): { field: string; message: string }[] {
  const problems: { field: string; message: string }[] = [];
  try {
    (Job.prototype as unknown as { validate(this: unknown): void }).validate.call(job);
  } catch (error) {
    const errors = (error as { errors?: unknown }).errors;
    if (!Array.isArray(errors)) throw error;
    for (const e of errors as { instancePath: string; message?: string }[]) {
      problems.push({ field: e.instancePath.replace(/^\//, '').replace(/\//g, '.') || '(root)', message: e.message ?? 'is invalid' });
    }
  }
  unknownFields(job, 'V1Job', '', problems);
  return problems;
}

type ModelClass = { getAttributeTypeMap(): { baseName: string; type: string }[] };
const models = k8s as unknown as Record<string, ModelClass | undefined>;

/** Walks a value against client-node's model of its type (`V1Job`, `Array<V1Container>`, `{ [key: string]: string; }`). */
function unknownFields(value: unknown, type: string, at: string, problems: { field: string; message: string }[]): void {
  if (value === null || typeof value !== 'object') return;
  const array = /^Array<(.+)>$/.exec(type);
  if (array) {
    if (Array.isArray(value)) value.forEach((item, i) => unknownFields(item, array[1]!, `${at}[${i}]`, problems));
    return;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    for (const [key, item] of Object.entries(value)) unknownFields(item, map[1]!, `${at}.${key}`, problems);
    return;
  }
  const model = models[type];
  if (typeof model?.getAttributeTypeMap !== 'function' || Array.isArray(value)) return;
  const fields = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
    const field = at ? `${at}.${key}` : key;
    const fieldType = fields.get(key);
    if (fieldType === undefined) problems.push({ field, message: `unknown field "${key}"` });
    else unknownFields(item, fieldType, field, problems);
  }
}
