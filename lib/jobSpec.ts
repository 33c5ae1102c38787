/**
 * What the control plane hands an agent to run (subgraphs/jobs dispatches it; agent/localJobHost.ts and
 * agent/kubernetes/jobs.ts run it): the wire contract of `POST /mariner/v1/jobs`, shared like the
 * tunnel's (lib/tunnel.ts).
 */

export interface HyperparametersValue {
  batchSize: number | null;
  learningRateMultiplier: number | null;
  nEpochs: number | null;
  beta: number | null;
}

export interface MethodValue {
  type: 'supervised' | 'dpo';
  hyperparameters: HyperparametersValue;
}

/** A fine-tuning job's integration (OpenAI API: only `wandb`): where the trainer reports to Weights & Biases. */
export interface IntegrationValue {
  type: 'wandb';
  wandb: { project: string; name: string | null; entity: string | null; tags: string[] };
}

/** Where a job came from: the id of the request that created it, which the dispatcher sends the agent as `x-request-id`. */
export interface JobOrigin {
  requestId?: string;
}

/** What the agent needs to run a fine-tuning job (object keys in the platform's store). */
export interface FineTuningSpec extends JobOrigin {
  kind: 'fine-tuning';
  baseModel: { id: string; source: string; formats: string[] };
  trainingFile: { id: string; objectKey: string; filename: string };
  validationFile: { id: string; objectKey: string; filename: string } | null;
  /** Where the agent stores the trainer's output (an object-store prefix ending in `/`). */
  outputPrefix: string;
  method: MethodValue;
  seed: number;
  gpuCount: number;
  namespace: string | null;
  kueueQueueName: string | null;
  /** The job's integrations (W&B: the trainer's WANDB_* environment); absent from specs stored before they were passed on. */
  integrations?: IntegrationValue[];
  /** Set by the dispatcher: the attempt, so an agent tells a requeued job from the lost one. */
  attempt?: number;
  /** Set by the dispatcher: where this attempt's output lines start. */
  logOffset?: number;
}

/** What the agent needs to run a batch job (LLMariner §4b). */
export interface BatchSpec extends JobOrigin {
  kind: 'batch';
  /** The container image (a preset resolved to its URI). */
  image: string;
  command: string;
  /** Files mounted at /scripts, base64 (at most 1 MB in all). */
  scripts: Record<string, string>;
  envs: Record<string, string>;
  /** Files of the project downloaded to /data. */
  dataFiles: { id: string; objectKey: string; filename: string }[];
  gpuCount: number;
  /** PyTorch workers (an Indexed Job with MASTER_ADDR/WORLD_SIZE/RANK when more than 1). */
  workerCount: number;
  namespace: string | null;
  kueueQueueName: string | null;
  attempt?: number;
  logOffset?: number;
}

/** What the agent needs to run a notebook (LLMariner §4c): a Jupyter Deployment and Service. */
export interface NotebookSpec extends JobOrigin {
  kind: 'notebook';
  /** Names the Kubernetes objects (unique in the project). */
  name: string;
  image: string;
  resources: {
    cpuMillicores: { requests: number | null; limits: number | null };
    memoryMegabytes: { requests: number | null; limits: number | null };
    storageMegabytes: { requests: number | null; limits: number | null };
  };
  envs: Record<string, string>;
  ports: number[];
  gpuCount: number;
  namespace: string | null;
  kueueQueueName: string | null;
  attempt?: number;
  logOffset?: number;
  /** Added by the dispatcher when it sends the notebook, never stored with it: Jupyter's token and an API key. */
  secrets?: { token: string; apiKey: string };
  /**
   * Added by the dispatcher: where browsers reach the notebook through the session manager
   * (`notebookBasePath`), Jupyter's `base_url`, so its pages link to where users see them.
   */
  basePath?: string;
}

/** Jupyter's port (LLMariner notebook.go); the notebook's Service exposes it and the extra ports. */
export const JUPYTER_PORT = 8888;
/** How a notebook's objects are found on its cluster: by these labels of its Service. */
export const JOB_ID_LABEL = 'mariner.dev/job-id';
export const NOTEBOOK_NAME_LABEL = 'mariner.dev/notebook';
/** On the notebook's Service: the path Jupyter serves under (its base_url), absent when it serves at `/`. */
export const NOTEBOOK_BASE_PATH_ANNOTATION = 'mariner.dev/jupyter-base-path';

/**
 * A notebook's path on the control plane (LLMariner session-manager):
 * `/v1/sessions/<cluster id>/v1/services/notebooks/<name>/<namespace>`, then `/<port>` for a port
 * other than Jupyter's (subgraphs/sessions/notebookProxy.ts serves it).
 */
export function notebookBasePath(clusterId: string, name: string, namespace: string): string {
  return `/v1/sessions/${clusterId}/v1/services/notebooks/${name}/${namespace}`;
}

export type JobSpec = FineTuningSpec | BatchSpec | NotebookSpec;
