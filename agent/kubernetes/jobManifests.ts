/**
 * The Kubernetes objects of jobs (LLMariner dispatcher job_client.go, cmd.tpl, batchjob.go). A
 * fine-tuning job: a batch/v1 Job running the trainer image, and a Secret with the job's presigned
 * URLs (inputs to download, outputs to upload), so the pod needs no object-store credentials. A batch
 * job: its command in its image, with scripts, data files and, for several workers, PyTorch DDP.
 */
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IJob } from 'kubernetes-models/batch/v1/Job';
import { JOB_ID_LABEL, JUPYTER_PORT, NOTEBOOK_BASE_PATH_ANNOTATION, NOTEBOOK_NAME_LABEL, type IntegrationValue, type NotebookSpec } from '../../lib/jobSpec.js';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { ISecret } from 'kubernetes-models/v1/Secret';
import type { IService } from 'kubernetes-models/v1/Service';
import { JobRefusedError } from '../executor.js';
import { validateManifest } from './manifests.js';

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export { JOB_ID_LABEL, JUPYTER_PORT };
export const ATTEMPT_ANNOTATION = 'mariner.dev/attempt';
/** Kueue picks the Job up by this label (reference §4a: the project's queue, else the default). */
export const KUEUE_QUEUE_LABEL = 'kueue.x-k8s.io/queue-name';
/** The files a LoRA trainer (PEFT) writes, uploaded with presigned PUTs. */
export const ADAPTER_FILES = ['adapter_config.json', 'adapter_model.safetensors'] as const;

const WORK_DIR = '/work';
/** The user and group fine-tuning pods run as. */
export const TRAINER_UID = 1000;
const URLS_DIR = '/mariner/urls';

/** A Job name from a job id: DNS-1123 (lowercase); the exact id is in the `mariner.dev/job-id` label. */
export function jobObjectName(jobId: string): string {
  return `mariner-${jobId.toLowerCase()}`.slice(0, 63);
}

/**
 * What every job's batch/v1 Job has besides its pods: its name and labels (the Kueue queue's too),
 * the attempt it runs, one try (a failed run fails the job; the control plane reports it, LLMariner:
 * backoffLimit 0), a TTL after it finished, and `suspend` when queued (Kueue admits it by unsuspending).
 */
function jobEnvelope(
  name: string,
  labels: Record<string, string>,
  input: { namespace: string; attempt: number; kueueQueueName: string | null; ttlSecondsAfterFinished: number },
): Pick<IJob, 'apiVersion' | 'kind' | 'metadata'> & { spec: { backoffLimit: number; ttlSecondsAfterFinished: number; suspend?: boolean } } {
  const queued = input.kueueQueueName !== null;
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      name,
      namespace: input.namespace,
      labels: { ...labels, ...(queued ? { [KUEUE_QUEUE_LABEL]: input.kueueQueueName! } : {}) },
      annotations: { [ATTEMPT_ANNOTATION]: String(input.attempt) },
    },
    spec: { backoffLimit: 0, ttlSecondsAfterFinished: input.ttlSecondsAfterFinished, ...(queued ? { suspend: true } : {}) },
  };
}

/** A Secret key in the job's namespace (a pod can only read Secrets of its own namespace). */
export interface SecretKeyRef {
  name: string;
  key: string;
}

/** What the trainer reports to Weights & Biases with: the job's `wandb` integration and the cluster's API key Secret. */
export interface TrainerWandb {
  project: string;
  name: string | null;
  entity: string | null;
  tags: string[];
  apiKeySecret: SecretKeyRef;
}

/**
 * The trainer's W&B settings for a job, or null when it has no `wandb` integration (the first one: the
 * environment holds one run). LLMariner §4a: WANDB_API_KEY comes from a Secret, configured on the
 * cluster (its dispatcher's `wandbApiKeySecret`), never from the job. A job that asks for W&B on a
 * cluster with no such Secret is refused: it would train without the reporting it asked for.
 */
export function trainerWandb(integrations: IntegrationValue[] | undefined, apiKeySecret: SecretKeyRef | undefined): TrainerWandb | null {
  const wandb = integrations?.find((integration) => integration.type === 'wandb')?.wandb;
  if (!wandb) return null;
  if (!apiKeySecret) {
    throw new JobRefusedError(
      'the job has a W&B integration but this cluster has no W&B API key: set MARINER_WANDB_API_KEY_SECRET on its agent to a Secret holding one',
    );
  }
  return { ...wandb, apiKeySecret };
}

/** The trainer's WANDB_* environment (read by the wandb library); the API key by reference to its Secret. */
function wandbEnv(wandb: TrainerWandb | null) {
  if (!wandb) return [];
  return [
    { name: 'WANDB_API_KEY', valueFrom: { secretKeyRef: { name: wandb.apiKeySecret.name, key: wandb.apiKeySecret.key } } },
    { name: 'WANDB_PROJECT', value: wandb.project },
    ...(wandb.name ? [{ name: 'WANDB_NAME', value: wandb.name }] : []),
    ...(wandb.entity ? [{ name: 'WANDB_ENTITY', value: wandb.entity }] : []),
    // wandb reads WANDB_TAGS as a comma-separated list.
    ...(wandb.tags.length > 0 ? [{ name: 'WANDB_TAGS', value: wandb.tags.join(',') }] : []),
  ];
}

export interface FineTuningManifestInput {
  jobId: string;
  attempt: number;
  namespace: string;
  image: string;
  /** The trainer's argv, run after the inputs are downloaded (MARINER_* environment, agent/README.md). */
  command: string[];
  gpuCount: number;
  kueueQueueName: string | null;
  method: string;
  hyperparameters: unknown;
  seed: number;
  baseModelId: string;
  /** Weights & Biases reporting (`trainerWandb`), or null. */
  wandb: TrainerWandb | null;
  urls: {
    training: string;
    validation: string | null;
    /** Each base-model object: its path under the model folder, and a presigned GET. */
    modelFiles: { path: string; url: string }[];
    /** Presigned PUTs of the adapter files, by file name. */
    outputs: Record<(typeof ADAPTER_FILES)[number], string>;
    /** Presigned PUTs of other files the trainer's command uploads itself (the default trainer's GGML adapter), by file name. */
    extraOutputs?: Record<string, string>;
  };
  /** How long the Job is kept after it finished (the agent reads its outcome before). */
  ttlSecondsAfterFinished: number;
}

/**
 * The pod's script: fetch inputs with curl, run the trainer, upload the adapter. URLs come from the
 * Secret's files and environment, never spliced into the script.
 */
const SCRIPT = [
  'set -eu',
  `mkdir -p ${WORK_DIR}/input ${WORK_DIR}/model ${WORK_DIR}/output`,
  'curl -fsSL --retry 3 -o "$MARINER_TRAINING_FILE" "$(cat ' + URLS_DIR + '/training)"',
  'if [ -s ' +
    URLS_DIR +
    '/validation ]; then curl -fsSL --retry 3 -o "$MARINER_VALIDATION_FILE" "$(cat ' +
    URLS_DIR +
    '/validation)"; else MARINER_VALIDATION_FILE=; fi',
  'while read -r file url; do',
  '  [ -n "$file" ] || continue',
  `  mkdir -p "$(dirname "${WORK_DIR}/model/$file")"`,
  `  curl -fsSL --retry 3 -o "${WORK_DIR}/model/$file" "$url"`,
  `done < ${URLS_DIR}/model-files`,
  'echo "mariner: inputs downloaded; starting the trainer"',
  '"$@"',
  ...ADAPTER_FILES.map((name) => `curl -fsSL --retry 3 -X PUT --upload-file "${WORK_DIR}/output/${name}" "$(cat ${URLS_DIR}/output-${name})"`),
  'echo "mariner: adapter uploaded"',
].join('\n');

export function fineTuningManifests(input: FineTuningManifestInput): { secret: ISecret; job: IJob } {
  const name = jobObjectName(input.jobId);
  const labels = { [MANAGED_BY_LABEL]: 'mariner', [JOB_ID_LABEL]: input.jobId };
  const secret: ISecret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: `${name}-urls`, namespace: input.namespace, labels },
    type: 'Opaque',
    stringData: {
      training: input.urls.training,
      validation: input.urls.validation ?? '',
      'model-files': input.urls.modelFiles.map((f) => `${f.path} ${f.url}`).join('\n') + '\n',
      ...Object.fromEntries(ADAPTER_FILES.map((file) => [`output-${file}`, input.urls.outputs[file]])),
      ...Object.fromEntries(Object.entries(input.urls.extraOutputs ?? {}).map(([file, url]) => [`output-${file}`, url])),
    },
  };
  const envelope = jobEnvelope(name, labels, input);
  const job: IJob = {
    ...envelope,
    spec: {
      ...envelope.spec,
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: 'Never',
          // Not root (the trainer needs no privilege): uid/gid 1000, the work volume writable by its group.
          securityContext: { runAsNonRoot: true, runAsUser: TRAINER_UID, runAsGroup: TRAINER_UID, fsGroup: TRAINER_UID },
          containers: [
            {
              name: 'trainer',
              image: input.image,
              command: ['/bin/sh', '-c', SCRIPT, 'mariner-trainer', ...input.command],
              env: [
                { name: 'MARINER_JOB_ID', value: input.jobId },
                // A home the non-root user can write (Hugging Face and pip caches).
                { name: 'HOME', value: WORK_DIR },
                { name: 'MARINER_BASE_MODEL', value: input.baseModelId },
                { name: 'MARINER_BASE_MODEL_DIR', value: `${WORK_DIR}/model` },
                { name: 'MARINER_TRAINING_FILE', value: `${WORK_DIR}/input/training.jsonl` },
                { name: 'MARINER_VALIDATION_FILE', value: `${WORK_DIR}/input/validation.jsonl` },
                { name: 'MARINER_OUTPUT_DIR', value: `${WORK_DIR}/output` },
                { name: 'MARINER_METHOD', value: input.method },
                { name: 'MARINER_HYPERPARAMETERS', value: JSON.stringify(input.hyperparameters) },
                { name: 'MARINER_SEED', value: String(input.seed) },
                { name: 'MARINER_GPU_COUNT', value: String(input.gpuCount) },
                ...wandbEnv(input.wandb),
              ],
              ...(input.gpuCount > 0 ? { resources: { limits: { 'nvidia.com/gpu': String(input.gpuCount) } } } : {}),
              // The trainer's last output is the failure reason when it leaves no termination message.
              terminationMessagePolicy: 'FallbackToLogsOnError',
              securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
              volumeMounts: [
                { name: 'work', mountPath: WORK_DIR },
                { name: 'urls', mountPath: URLS_DIR, readOnly: true },
              ],
            },
          ],
          volumes: [
            { name: 'work', emptyDir: {} },
            { name: 'urls', secret: { secretName: `${name}-urls` } },
          ],
        },
      },
    },
  };
  validateManifest(secret);
  validateManifest(job);
  return { secret, job };
}

/** PyTorch's rendezvous port (LLMariner batchjob.go). */
export const PYTORCH_MASTER_PORT = 23456;

export interface BatchManifestInput {
  jobId: string;
  attempt: number;
  namespace: string;
  image: string;
  command: string;
  /** Base64 contents by file name, mounted at /scripts (a ConfigMap: at most 1 MB, as the API limits). */
  scripts: Record<string, string>;
  envs: Record<string, string>;
  /** Data files to download to /data: file name and presigned GET. */
  dataFiles: { filename: string; url: string }[];
  gpuCount: number;
  workerCount: number;
  kueueQueueName: string | null;
  openaiBaseUrl: string | null;
  ttlSecondsAfterFinished: number;
}

/**
 * A batch job (LLMariner batchjob.go): its scripts in a ConfigMap, its data-file URLs in a Secret, and
 * a Job running the command after the data files are fetched. With several workers, an Indexed Job
 * of `workerCount` completions behind a headless Service, each pod told MASTER_ADDR (worker 0),
 * MASTER_PORT, WORLD_SIZE and its RANK (its completion index) for PyTorch DDP.
 */
export function batchJobManifests(input: BatchManifestInput): { configMap: IConfigMap; secret: ISecret; service: IService | null; job: IJob } {
  const name = jobObjectName(input.jobId);
  const labels = { [MANAGED_BY_LABEL]: 'mariner', [JOB_ID_LABEL]: input.jobId };
  const distributed = input.workerCount > 1;
  const configMap: IConfigMap = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: `${name}-scripts`, namespace: input.namespace, labels },
    binaryData: input.scripts,
  };
  const secret: ISecret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: `${name}-urls`, namespace: input.namespace, labels },
    type: 'Opaque',
    stringData: { 'data-files': input.dataFiles.map((f) => `${f.filename} ${f.url}`).join('\n') + '\n' },
  };
  // Pods of an Indexed Job with a subdomain get stable names: <name>-<index>.<name>.
  const service: IService | null = distributed
    ? {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name, namespace: input.namespace, labels },
        spec: { clusterIP: 'None', selector: { [JOB_ID_LABEL]: input.jobId }, ports: [{ name: 'rendezvous', port: PYTORCH_MASTER_PORT }] },
      }
    : null;
  const script = [
    'set -eu',
    'mkdir -p /data',
    // Data files only need curl when there are some.
    `if [ -s ${URLS_DIR}/data-files ]; then while read -r file url; do [ -n "$file" ] || continue; curl -fsSL --retry 3 -o "/data/$file" "$url"; done < ${URLS_DIR}/data-files; fi`,
    'exec /bin/sh -c "$MARINER_COMMAND"',
  ].join('\n');
  const envelope = jobEnvelope(name, labels, input);
  const job: IJob = {
    ...envelope,
    spec: {
      ...envelope.spec,
      ...(distributed ? { completionMode: 'Indexed' as const, completions: input.workerCount, parallelism: input.workerCount } : {}),
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: 'Never',
          ...(distributed ? { subdomain: name } : {}),
          containers: [
            {
              name: 'main',
              image: input.image,
              command: ['/bin/sh', '-c', script],
              workingDir: '/scripts',
              env: [
                ...Object.entries(input.envs).map(([envName, value]) => ({ name: envName, value })),
                { name: 'MARINER_COMMAND', value: input.command },
                { name: 'MARINER_JOB_ID', value: input.jobId },
                ...(input.openaiBaseUrl ? [{ name: 'OPENAI_BASE_URL', value: input.openaiBaseUrl }] : []),
                ...(distributed
                  ? [
                      { name: 'MASTER_ADDR', value: `${name}-0.${name}` },
                      { name: 'MASTER_PORT', value: String(PYTORCH_MASTER_PORT) },
                      { name: 'WORLD_SIZE', value: String(input.workerCount) },
                      { name: 'RANK', valueFrom: { fieldRef: { fieldPath: "metadata.annotations['batch.kubernetes.io/job-completion-index']" } } },
                    ]
                  : []),
              ],
              ...(input.gpuCount > 0 ? { resources: { limits: { 'nvidia.com/gpu': String(input.gpuCount) } } } : {}),
              terminationMessagePolicy: 'FallbackToLogsOnError',
              volumeMounts: [
                { name: 'scripts', mountPath: '/scripts' },
                { name: 'data', mountPath: '/data' },
                { name: 'urls', mountPath: URLS_DIR, readOnly: true },
              ],
            },
          ],
          volumes: [
            { name: 'scripts', configMap: { name: `${name}-scripts`, defaultMode: 0o755 } },
            { name: 'data', emptyDir: {} },
            { name: 'urls', secret: { secretName: `${name}-urls` } },
          ],
        },
      },
    },
  };
  for (const manifest of [configMap, secret, job, ...(service ? [service] : [])]) validateManifest(manifest);
  return { configMap, secret, service, job };
}

export interface NotebookManifestInput {
  jobId: string;
  attempt: number;
  namespace: string;
  name: string;
  image: string;
  resources: NotebookSpec['resources'];
  envs: Record<string, string>;
  ports: number[];
  gpuCount: number;
  kueueQueueName: string | null;
  secrets: { token: string; apiKey: string };
  openaiBaseUrl: string | null;
  /** Where users reach Jupyter through the control plane (its base_url); null: at `/`. */
  basePath: string | null;
}

/**
 * A notebook (LLMariner notebook.go): a Secret with its token and API key, a Deployment of one
 * `jupyterlab` container started with that token, and a Service for Jupyter's port and the extra ones.
 * Stopping scales the Deployment to 0 (its Service and Secret stay); starting scales it back.
 */
export function notebookManifests(input: NotebookManifestInput): { secret: ISecret; deployment: IDeployment; service: IService } {
  const name = jobObjectName(input.jobId);
  const labels = { [MANAGED_BY_LABEL]: 'mariner', [JOB_ID_LABEL]: input.jobId, [NOTEBOOK_NAME_LABEL]: input.name };
  const secretName = `${name}-secrets`;
  const secret: ISecret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: secretName, namespace: input.namespace, labels },
    type: 'Opaque',
    stringData: { NOTEBOOK_TOKEN: input.secrets.token, OPENAI_API_KEY: input.secrets.apiKey, LLMARINER_API_KEY: input.secrets.apiKey },
  };
  const quantity = (value: number | null, unit: string) => (value === null ? undefined : `${value}${unit}`);
  const resourceList = (pick: 'requests' | 'limits') =>
    Object.fromEntries(
      Object.entries({
        cpu: quantity(input.resources.cpuMillicores[pick], 'm'),
        memory: quantity(input.resources.memoryMegabytes[pick], 'M'),
        'ephemeral-storage': quantity(input.resources.storageMegabytes[pick], 'M'),
        ...(pick === 'limits' && input.gpuCount > 0 ? { 'nvidia.com/gpu': String(input.gpuCount) } : {}),
      }).filter((entry): entry is [string, string] => entry[1] !== undefined),
    );
  const requests = resourceList('requests');
  const limits = resourceList('limits');
  const ports = [JUPYTER_PORT, ...input.ports];
  const deployment: IDeployment = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: input.namespace, labels, annotations: { [ATTEMPT_ANNOTATION]: String(input.attempt) } },
    spec: {
      replicas: 1,
      selector: { matchLabels: { [JOB_ID_LABEL]: input.jobId } },
      template: {
        // Kueue admits the notebook's pod by this label (its pod integration).
        metadata: { labels: { ...labels, ...(input.kueueQueueName ? { [KUEUE_QUEUE_LABEL]: input.kueueQueueName } : {}) } },
        spec: {
          containers: [
            {
              name: 'jupyterlab',
              image: input.image,
              // Under its public path, Jupyter's pages and API calls link to where the browser sees them.
              args: ['start-notebook.py', '--IdentityProvider.token=$(NOTEBOOK_TOKEN)', ...(input.basePath ? [`--ServerApp.base_url=${input.basePath}/`] : [])],
              ports: ports.map((port) => ({ containerPort: port, protocol: 'TCP' as const })),
              env: [
                ...Object.entries(input.envs).map(([envName, value]) => ({ name: envName, value })),
                ...(input.openaiBaseUrl ? [{ name: 'OPENAI_BASE_URL', value: input.openaiBaseUrl }] : []),
              ],
              envFrom: [{ secretRef: { name: secretName } }],
              ...(Object.keys(requests).length + Object.keys(limits).length > 0
                ? { resources: { ...(Object.keys(requests).length > 0 ? { requests } : {}), ...(Object.keys(limits).length > 0 ? { limits } : {}) } }
                : {}),
              readinessProbe: { httpGet: { path: '/api', port: JUPYTER_PORT }, periodSeconds: 5 },
            },
          ],
        },
      },
    },
  };
  const service: IService = {
    apiVersion: 'v1',
    kind: 'Service',
    // The session manager's notebook proxy reads where Jupyter serves from here.
    metadata: {
      name,
      namespace: input.namespace,
      labels,
      ...(input.basePath ? { annotations: { [NOTEBOOK_BASE_PATH_ANNOTATION]: `${input.basePath}/` } } : {}),
    },
    spec: {
      selector: { [JOB_ID_LABEL]: input.jobId },
      ports: ports.map((port) => ({ name: `port-${port}`, port, targetPort: port, protocol: 'TCP' as const })),
    },
  };
  for (const manifest of [secret, deployment, service]) validateManifest(manifest);
  return { secret, deployment, service };
}
