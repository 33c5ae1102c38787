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

/** What the agent needs to run a fine-tuning job (object keys in the platform's store). */
export interface FineTuningSpec {
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
  /** Set by the dispatcher: the attempt, so an agent tells a requeued job from the lost one. */
  attempt?: number;
  /** Set by the dispatcher: where this attempt's output lines start. */
  logOffset?: number;
}

/** What the agent needs to run a batch job (LLMariner §4b). */
export interface BatchSpec {
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
export interface NotebookSpec {
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
}

export type JobSpec = FineTuningSpec | BatchSpec | NotebookSpec;
