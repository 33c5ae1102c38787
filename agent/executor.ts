import type { Http2ServerRequest, Http2ServerResponse, IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { ScalingSchedule } from '../lib/scalingSchedule.js';
import type { LoadBalancing } from '../lib/prefixHashRing.js';
import type { GpuQuotaReport, WorkerGpuQuota } from './kubernetes/kueueQueues.js';

/** What an agent reports about its cluster (the clusters subgraph's ClusterStatusInput). */
export interface ClusterStatusReport {
  nodes: { name: string; ready: boolean; gpuCapacity: number; gpuAllocatable: number; gpuProduct: string | null; cpuCores: number; memoryBytes: number }[];
  gpuCapacity: number;
  gpuAllocated: number;
  gpuPods: { namespace: string; name: string; gpus: number; phase: string }[];
  provisionableResources: { instanceFamily: string | null; instanceType: string | null }[];
}

/** The cluster's GPU configuration as the control plane asks it to be applied. */
export interface ClusterConfig {
  timeSlicingGpus: number | null;
}

/** Forwards Kubernetes API requests arriving over the tunnel to the cluster's API server. */
export interface KubeApiHandler {
  handle(req: Http2ServerRequest, res: Http2ServerResponse, path: string): void;
  handleUpgrade(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, path: string): void;
}

/** An active model an agent must run (the models subgraph's `workerActiveModels`). */
export interface ActiveModel {
  id: string;
  source: string;
  formats: string[];
  gpu: number;
  replicas: number;
  extraArgs: string[];
  /**
   * Its active LoRA adapters (fine-tuned models' ids) this cluster may serve on its runtimes: a runtime
   * unloads any other it holds (a fine-tuned model deleted or deactivated). Absent: nothing is unloaded.
   */
  loraAdapters?: string[];
  /** The model's own scaling schedules (set on the model); empty or absent: the agent's configured ones. */
  scalingSchedules?: ScalingSchedule[];
  /** How requests are spread over its replicas (lib/prefixHashRing.ts); absent: LEAST_IN_FLIGHT. */
  loadBalancing?: LoadBalancing;
  /** With PREFIX_HASH: the prompt characters that form the routing key; absent: 1024. */
  prefixHashChars?: number;
}

/** The autoscaler's state of one model's runtime (agent/autoscaler.ts). */
export interface AutoscalingReport {
  minReplicas: number;
  maxReplicas: number;
  targetInFlight: number;
  /** Requests in flight, averaged over the metrics window. */
  averageInFlight: number;
  /** Seconds since the last request in flight (0 while one is). */
  idleSeconds: number;
  /** When the runtime goes to zero replicas if no request comes (null: it does not). */
  scaleToZeroAt: string | null;
  lastScaledAt: string | null;
  lastScaleReason: string | null;
  /** The scaling schedule in force (lib/scalingSchedule.ts); null without one. */
  schedule?: ScalingSchedule | null;
  /** When the next schedule of the model fires. */
  nextScheduleChangeAt?: string | null;
  /** Shut down by its schedule, refusing requests: when the window opens. */
  scheduledOffUntil?: string | null;
}

/** One model's runtime state, as the agent reports it (the inference subgraph's `reportRuntimes`). */
export interface RuntimeReport {
  modelId: string;
  desiredReplicas: number;
  readyReplicas: number;
  inFlightRequests: number;
  statusMessage: string;
  /** Absent when the replicas are the model's configured count (no autoscaler). */
  autoscaling?: AutoscalingReport;
  /**
   * Why this cluster cannot run the model at all (a model of a layout its executor does not serve):
   * the control plane refuses the model's requests at once with this reason instead of holding them
   * for a runtime. Absent while the model runs, starts, or failed in a way a retry may mend.
   */
  failure?: string;
}

/** A model this executor cannot run, whatever is tried again (RuntimeReport `failure`): not a transient failure. */
export class RuntimeRefusedError extends Error {
  override name = 'RuntimeRefusedError';
}

/** Runs the active models' inference runtimes and forwards requests to them. */
export interface RuntimeHost {
  /** Starts runtimes for these models and stops the others. */
  reconcile(models: ActiveModel[]): Promise<void>;
  status(): Promise<RuntimeReport[]>;
  /** The replicas of the runtimes that exist now, by model id (what an agent restart finds). */
  currentReplicas?(): Promise<Map<string, number>>;
  /** Forwards one request (`runtimePath`, e.g. /v1/chat/completions) to the model's runtime. */
  forward(modelId: string, req: Http2ServerRequest, res: Http2ServerResponse, runtimePath: string): void;
  close(): Promise<void>;
}

/** A job the control plane dispatched (lib/jobSpec.ts; agent/index.ts takes it, the executor's job host runs it). */
export interface DispatchedJob {
  id: string;
  spec: Record<string, unknown> & { kind: string; attempt?: number; logOffset?: number };
}

/** A job this executor cannot run at all (a permanent refusal, not a transient failure). */
export class JobRefusedError extends Error {
  override name = 'JobRefusedError';
}

/** Runs dispatched jobs and reports their output and phases (agent/jobReporter.ts). */
export interface JobHost {
  /** Starts the job; a job already running here (same attempt) is left alone. Throws JobRefusedError. */
  start(job: DispatchedJob): Promise<'started' | 'running'>;
  /** Stops the job; false when this host does not have it. */
  cancel(jobId: string): Promise<boolean>;
  /** Notebooks: scales it down, keeping what it has (false: not here). */
  stop?(job: DispatchedJob): Promise<boolean>;
  /** Notebooks: scales it up again (false: not here, so the control plane creates it anew). */
  resume?(job: DispatchedJob): Promise<boolean>;
  /** Removes what the job has on the cluster (false: nothing was there). */
  remove?(job: DispatchedJob): Promise<boolean>;
  /**
   * Whether the job runs here. After an agent restart, a host whose work outlives the agent (Kubernetes
   * Jobs) finds it again and goes on following it.
   */
  has(job: DispatchedJob): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * Where an agent runs work: a Kubernetes cluster, or processes on the local machine (`mariner up`).
 * Jobs, notebooks and inference runtimes are added to it by the issues that build them.
 */
export interface Executor {
  readonly kind: 'local' | 'kubernetes';
  /** The Kubernetes API for `/v1/sessions`; null on the local executor. */
  readonly kubeApi: KubeApiHandler | null;
  /** Inference runtimes; null where this executor does not run them yet. */
  readonly runtimes: RuntimeHost | null;
  /** Jobs (fine-tuning); null where this executor cannot run them. */
  readonly jobs: JobHost | null;
  clusterStatus(): Promise<ClusterStatusReport>;
  /** Applies the GPU configuration (Kubernetes: the NVIDIA device-plugin ConfigMap). */
  applyConfig(config: ClusterConfig | null): Promise<void>;
  /**
   * Kubernetes with `worker.namespaces: dynamic` only: binds the project role in the namespaces the
   * cluster's projects are assigned and unbinds it where they were released (kubernetes/projectRoleBindings.ts).
   */
  followProjectNamespaces?(namespaces: string[]): Promise<void>;
  /**
   * Kubernetes: keeps Kueue's queues of the projects' GPU quotas on this cluster and answers what Kueue
   * says of them, GPUs admitted and jobs waiting for quota (kubernetes/kueueQueues.ts).
   */
  followGpuQuotas?(quotas: WorkerGpuQuota[]): Promise<GpuQuotaReport>;
  close(): Promise<void>;
}
