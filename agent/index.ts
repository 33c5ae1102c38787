import { randomUUID } from 'node:crypto';
import http2, { type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { ErrorCode, MarinerError } from '../lib/errors.js';
import { graphqlRequest } from '../lib/graphqlClient.js';
import type { Logger } from '../lib/logging.js';
import { parseAgentRoute, type AgentJobAction, type AgentReport } from '../lib/agentContract.js';
import { kubernetesStatus, TUNNEL_H2_SETTINGS, TUNNEL_RESET_LIMITS, UPGRADE_HEADER } from '../lib/tunnel.js';
import os from 'node:os';
import path from 'node:path';
import { JobRefusedError, type ClusterConfig, type DispatchedJob, type Executor } from './executor.js';
import { JobReporter } from './jobReporter.js';
import { ReportOutbox } from './reportOutbox.js';
import { logRuntimeRequest } from './forwardToRuntime.js';
import { createLocalJobHost } from './localJobHost.js';
import type { KubernetesJobSettings } from './kubernetes/jobs.js';
import type { WorkerGpuQuota } from './kubernetes/kueueQueues.js';
import type { AutoscalerConfig } from '../lib/config.js';
import { createAutoscaler, type AutoscaledRuntimeHost } from './autoscaler.js';
import { createLocalExecutor } from './localExecutor.js';
import { startModelLoader, type ModelLoaderOptions } from './loader.js';
import { TunnelClient, type TunnelTransportKind } from './tunnelClient.js';
import { startRuntimeReconciler } from './runtimeReconciler.js';
import type { ObjectStore } from '../lib/objectStore/index.js';

export type { ClusterStatusReport, Executor } from './executor.js';
export { TunnelRefusedError } from './tunnelClient.js';

export interface AgentOptions {
  /** The control plane's public URL (GraphQL at /graphql, the tunnel endpoint under /v1). */
  controlPlaneUrl: string;
  registrationKey: string;
  executor: 'local' | 'kubernetes' | Executor;
  /** The platform's object store: model weights for the local executor's runtimes. */
  objectStore?: ObjectStore | undefined;
  /** Where the local executor caches model weights. */
  cacheDir?: string | undefined;
  /** How often active models are reconciled into runtimes (default 15 s). */
  runtimeIntervalMs?: number;
  /** Path of a kubeconfig for the Kubernetes executor; in-cluster config when absent in a pod. */
  kubeconfig?: string | undefined;
  transport?: TunnelTransportKind;
  /** Tunnels to keep open (LLMariner poolSize); requests spread across them. */
  tunnels?: number;
  statusIntervalMs?: number;
  heartbeatIntervalMs?: number;
  heartbeatTimeoutMs?: number;
  backoff?: { initialMs: number; maxMs: number };
  /**
   * Runs the model loader (agent/loader.ts): base models of the tenant are downloaded into the platform's
   * object store (the control plane's configuration) and reported.
   */
  loader?: Pick<ModelLoaderOptions, 'objectStore' | 'huggingFace' | 'ollama' | 'pollIntervalMs' | 'concurrency'> | undefined;
  /**
   * Fine-tuning jobs. Local executor: the trainer's command line (argv) and where jobs work. Kubernetes
   * executor: the trainer image and command, the default Kueue queue (from the environment when absent).
   */
  jobs?:
    | {
        trainerCommand?: string[] | undefined;
        workDir?: string | undefined;
        /** Local executor: run batch jobs' commands on this machine (MARINER_LOCAL_BATCH_JOBS; default no). */
        runBatchJobs?: boolean | undefined;
        kubernetes?: KubernetesJobSettings | undefined;
      }
    | undefined;
  /** The builtin autoscaler of inference runtimes (lib/config.ts `autoscaler`); off when absent. */
  autoscaler?: AutoscalerConfig | undefined;
  logger: Logger;
}

export interface Agent {
  agentId: string;
  clusterId: string;
  clusterName: string;
  executor: Executor;
  /** Resolves once at least one tunnel is up. */
  whenConnected(): Promise<void>;
  /** True while at least one tunnel is up. */
  connected(): boolean;
  /** Sends the status reports now (they also go out on a timer). */
  reportStatus(): Promise<void>;
  /** Deploys the active models' runtimes now and reports them (also on a timer). */
  reconcileRuntimes(): Promise<void>;
  /** Test hook: cut every tunnel's connection as a network failure would; the agent redials. */
  dropConnections(): void;
  /** Resolves with the reason when the control plane refuses the registration key. */
  refused: Promise<string>;
  close(): Promise<void>;
}

const WORKER_JOBS = 'query AgentJobs { workerJobs { id status pendingAction spec } }';
const WORKER_CLUSTER = 'query AgentCluster { workerCluster { clusterId clusterName tenantId config { timeSlicingGpus } } }';
const WORKER_NAMESPACES = 'query AgentNamespaces { workerNamespaces }';
const WORKER_GPU_QUOTAS =
  'query AgentGpuQuotas { workerGpuQuotas { projectId organizationId namespaces queueName resource flavor nominalGpus borrowingAllowed } }';
const REPORT_GPU_QUOTAS = 'mutation AgentGpuQuotaStatus($input: GpuQuotaReportInput!) { reportGpuQuotaStatus(input: $input) }';
const REPORT_STATUS = `mutation AgentReport($status: ClusterStatusInput!, $agent: ComponentStatusInput!, $executor: ComponentStatusInput!) {
  reportClusterStatus(input: $status) { updatedAt }
  agent: reportComponentStatus(input: $agent) { updatedAt }
  executor: reportComponentStatus(input: $executor) { updatedAt }
}`;

/**
 * `mariner agent`: checks its registration key, opens its tunnel(s) to the control plane, serves the
 * worker API over them (the Kubernetes API under /k8s, its own under /mariner/v1), and reports the
 * cluster's status and health on a timer (LLMariner ClustersWorkerService).
 */
export async function startAgent(options: AgentOptions): Promise<Agent> {
  const agentId = randomUUID();
  const logger = options.logger.child({ component: 'agent', agentId });
  const graphqlUrl = new URL('/graphql', options.controlPlaneUrl).toString();
  const asWorker = { authorization: `Bearer ${options.registrationKey}` };
  const worker = async () =>
    (
      await graphqlRequest<{ workerCluster: { clusterId: string; clusterName: string; config: ClusterConfig | null } }>(
        graphqlUrl,
        WORKER_CLUSTER,
        {},
        asWorker,
      )
    ).workerCluster;

  let cluster: Awaited<ReturnType<typeof worker>>;
  try {
    cluster = await worker();
  } catch (error) {
    if (error instanceof MarinerError && error.code === ErrorCode.UNAUTHENTICATED) {
      throw new MarinerError(ErrorCode.UNAUTHENTICATED, `The control plane at ${options.controlPlaneUrl} refused the registration key: ${error.message}`);
    }
    throw error;
  }
  // Reports (job output and phases, runtime state) go up the tunnels: the control plane polls for them.
  const outbox = new ReportOutbox();
  const send = (report: AgentReport) => outbox.send(report);
  const reporter = new JobReporter(send, logger);
  const executor = typeof options.executor === 'object' ? options.executor : await createExecutor(options, reporter, logger);
  logger.info({ clusterId: cluster.clusterId, cluster: cluster.clusterName, executor: executor.kind }, 'agent starting');

  // Set once the tunnels are up; requests may arrive before (a reconcile nudge is then a no-op).
  let reconciler: ReturnType<typeof startRuntimeReconciler> | undefined;
  // The runtimes as requests and the reconciler see them: with the autoscaler, it decides the replicas.
  const autoscaled: AutoscaledRuntimeHost | undefined =
    executor.runtimes && options.autoscaler?.enabled
      ? createAutoscaler(executor.runtimes, options.autoscaler, logger, () => void reconciler?.reconcileNow())
      : undefined;
  const runtimes = autoscaled ?? executor.runtimes;
  const server = http2.createServer({ settings: TUNNEL_H2_SETTINGS, maxSessionMemory: 64, ...TUNNEL_RESET_LIMITS }, (req, res) => route(req, res));
  function route(req: Http2ServerRequest, res: Http2ServerResponse): void {
    const path = req.headers[':path'] ?? '/';
    const to = parseAgentRoute(path);
    switch (to?.kind) {
      // `/mariner/v1/runtimes/<model id>/<OpenAI path>`: inference, to the model's runtime here.
      case 'runtime':
        logRuntimeRequest(logger, req, res, to.modelId, to.path);
        if (!runtimes)
          return json(res, 503, {
            error: { message: `cluster ${cluster.clusterName} runs no inference runtimes`, type: 'server_error', param: null, code: null },
          });
        return runtimes.forward(to.modelId, req, res, to.path);
      case 'kubernetes':
        if (!executor.kubeApi) return json(res, 404, kubernetesStatus(404, `cluster ${cluster.clusterName} runs the local executor: it has no Kubernetes API`));
        if (req.headers[UPGRADE_HEADER]) return executor.kubeApi.handleUpgrade(req.stream, req.headers, to.path);
        return executor.kubeApi.handle(req, res, to.path);
      case 'healthz':
        return json(res, 200, { agentId, clusterId: cluster.clusterId, executor: executor.kind });
      // The control plane asks for a reconciliation now: a model was just activated on demand, or a
      // request waits for a model with no ready replica (`?wake=<model id>`: scale it from zero).
      case 'reconcile': {
        const woken = to.wake !== null && (autoscaled?.wake(to.wake) ?? false);
        void reconciler?.reconcileNow();
        return json(res, 202, { reconciling: Boolean(reconciler), woken });
      }
      // The control plane's job dispatcher: start a job, or act on one.
      case 'startJob':
      case 'jobAction':
        if (req.method !== 'POST') break;
        return void handleJob(req, res, to.kind === 'jobAction' ? { id: to.jobId, action: to.action } : undefined);
      // The control plane's long poll for this agent's reports, and what became of them.
      case 'reports':
        if (req.method !== 'POST') break;
        return void outbox.handlePoll(req, res);
      case 'reportResults':
        if (req.method !== 'POST') break;
        return void outbox.handleResults(req, res);
      case undefined:
        break;
    }
    json(res, 404, { error: `the agent serves no ${path.slice(0, 200)}` });
  }
  /** The id of the job a dispatch carries, for the log line of a refusal (undefined when unreadable). */
  async function dispatchedJobId(req: Http2ServerRequest): Promise<string | undefined> {
    try {
      const { id } = JSON.parse((await readBody(req, 1024 * 1024)).toString('utf8')) as { id?: unknown };
      return typeof id === 'string' ? id : undefined;
    } catch {
      return undefined;
    }
  }

  async function handleJob(req: Http2ServerRequest, res: Http2ServerResponse, on: { id: string; action: AgentJobAction } | undefined): Promise<void> {
    const jobs = executor.jobs;
    // The id of the request that created the job (the dispatcher's x-request-id) on every line about it.
    const requestId = typeof req.headers['x-request-id'] === 'string' ? req.headers['x-request-id'].slice(0, 200) : undefined;
    const log = requestId ? logger.child({ requestId }) : logger;
    let jobId = on?.id;
    const refuse = (status: number, message: string) => {
      log.info({ jobId, action: on?.action ?? 'start', status, reason: message }, 'job request refused');
      json(res, status, { error: { message } });
    };
    if (!jobs) {
      if (!on) jobId = await dispatchedJobId(req);
      return refuse(422, `cluster ${cluster.clusterName} runs the ${executor.kind} executor, which does not run jobs yet`);
    }
    try {
      if (on) {
        const body = (await readBody(req, 1024 * 1024)).toString('utf8');
        const job = (body ? (JSON.parse(body) as Partial<DispatchedJob>) : {}) as DispatchedJob;
        job.id = on.id;
        const done =
          on.action === 'cancel'
            ? await jobs.cancel(on.id)
            : on.action === 'stop'
              ? await (jobs.stop?.(job) ?? false)
              : on.action === 'start'
                ? await (jobs.resume?.(job) ?? false)
                : await (jobs.remove?.(job) ?? false);
        return done ? json(res, 202, { [on.action]: on.id }) : refuse(404, `job ${on.id} is not here`);
      }
      const job = JSON.parse((await readBody(req, 1024 * 1024)).toString('utf8')) as DispatchedJob;
      if (typeof job?.id !== 'string' || typeof job.spec?.kind !== 'string') return refuse(400, 'a job needs an id and a spec with a kind');
      jobId = job.id;
      const outcome = await jobs.start(job);
      log.info({ jobId: job.id, outcome }, 'job dispatched here');
      json(res, 202, { [outcome]: job.id });
    } catch (error) {
      if (error instanceof JobRefusedError) return refuse(422, error.message);
      log.warn({ err: (error as Error).message }, 'could not take a job');
      refuse(500, (error as Error).message);
    }
  }

  /**
   * After (re)connecting: jobs the control plane believes run here but this agent does not have
   * (it restarted; their Kubernetes Job was deleted) are reported lost, so they are queued again.
   */
  async function reconcileJobs(): Promise<void> {
    const jobs = executor.jobs;
    if (!jobs) return;
    const { workerJobs } = await graphqlRequest<{ workerJobs: (DispatchedJob & { status: string; pendingAction: string | null })[] }>(
      graphqlUrl,
      WORKER_JOBS,
      {},
      asWorker,
    );
    for (const job of workerJobs) {
      if (job.pendingAction === 'CREATING' || (await jobs.has(job))) continue;
      logger.warn({ jobId: job.id }, 'the control plane has a job here that this agent does not run; reporting it lost');
      void reporter.phase(job.id, { phase: 'LOST', message: `the agent ${agentId} does not have it (it restarted, or the job's work was removed)` });
    }
  }

  // A stream's errors (the control plane cancelled it) are per request: never fatal to the agent.
  server.on('sessionError', (error) => logger.debug({ err: error.message }, 'tunnel session error'));

  let settleRefused!: (reason: string) => void;
  const refused = new Promise<string>((resolve) => (settleRefused = resolve));
  let refusal: string | undefined;
  // A refused key is final: close every tunnel, then tell the caller (the CLI exits).
  const resolveRefused = (reason: string) => {
    if (refusal !== undefined) return;
    refusal = reason;
    void Promise.all(clients.map((c) => c.stop())).then(() => settleRefused(reason));
  };
  const connectedWaiters: (() => void)[] = [];
  const clients = Array.from(
    { length: Math.max(1, options.tunnels ?? 1) },
    () =>
      new TunnelClient({
        controlPlaneUrl: options.controlPlaneUrl,
        registrationKey: options.registrationKey,
        agentId,
        transport: options.transport ?? 'auto',
        server,
        logger,
        heartbeatIntervalMs: options.heartbeatIntervalMs ?? 10_000,
        heartbeatTimeoutMs: options.heartbeatTimeoutMs ?? 20_000,
        backoff: options.backoff ?? { initialMs: 500, maxMs: 30_000 },
        onRefused: (message) => {
          logger.error({ reason: message }, 'registration key refused: the agent stops');
          resolveRefused(message);
        },
        onStateChange: (up) => {
          if (up) connectedWaiters.splice(0).forEach((wake) => wake());
          if (up) void reconcileJobs().catch((error: Error) => logger.warn({ err: error.message }, 'job reconciliation failed'));
          // The agent's health is whether it holds a tunnel: tell the control plane at once.
          void reportSafely();
        },
      }),
  );
  const isConnected = () => clients.some((c) => c.connected);

  let appliedConfig = 'unset';
  let lastStatusError: string | null = null;
  let lastConfigError: string | null = null;
  let lastQuotaReport = JSON.stringify({ usage: [], waiting: [] });
  async function reportStatus(): Promise<void> {
    let status;
    try {
      status = await executor.clusterStatus();
      lastStatusError = null;
    } catch (error) {
      lastStatusError = (error as Error).message;
      status = { nodes: [], gpuCapacity: 0, gpuAllocated: 0, gpuPods: [], provisionableResources: [] };
    }
    const { gpuCapacity: _capacity, gpuAllocated: _allocated, ...input } = status;
    await graphqlRequest(
      graphqlUrl,
      REPORT_STATUS,
      {
        status: input,
        agent: { name: 'agent', isHealthy: isConnected(), message: isConnected() ? `agent ${agentId} connected` : `agent ${agentId} has no tunnel` },
        executor: {
          name: 'executor',
          isHealthy: lastStatusError === null && lastConfigError === null,
          message: lastStatusError ?? (lastConfigError ? `GPU configuration not applied: ${lastConfigError}` : `${executor.kind} executor`),
        },
      },
      asWorker,
    );
    const current = await worker();
    const wanted = JSON.stringify(current.config);
    if (wanted !== appliedConfig) {
      try {
        await executor.applyConfig(current.config);
        appliedConfig = wanted;
        lastConfigError = null;
      } catch (error) {
        // Shown as the executor's health on the next report; retried then.
        lastConfigError = (error as Error).message;
        logger.warn({ err: lastConfigError }, 'could not apply the cluster configuration');
      }
    }
    // The agent's project role follows the assignments (worker.namespaces: dynamic): bound where assigned, unbound where released.
    if (executor.followProjectNamespaces) {
      const { workerNamespaces } = await graphqlRequest<{ workerNamespaces: string[] }>(graphqlUrl, WORKER_NAMESPACES, {}, asWorker);
      await executor.followProjectNamespaces(workerNamespaces);
    }
    // Kueue's queues follow the projects' GPU quotas; what Kueue says of them goes back when it changed.
    if (executor.followGpuQuotas) {
      const { workerGpuQuotas } = await graphqlRequest<{ workerGpuQuotas: WorkerGpuQuota[] }>(graphqlUrl, WORKER_GPU_QUOTAS, {}, asWorker);
      const report = JSON.stringify(await executor.followGpuQuotas(workerGpuQuotas));
      if (report !== lastQuotaReport) {
        await graphqlRequest(graphqlUrl, REPORT_GPU_QUOTAS, { input: JSON.parse(report) }, asWorker);
        lastQuotaReport = report;
      }
    }
  }
  const reportSafely = () =>
    reportStatus().catch((error: Error) => {
      if (error instanceof MarinerError && error.code === ErrorCode.UNAUTHENTICATED) {
        resolveRefused(`the control plane refused the registration key: ${error.message}`);
      }
      logger.warn({ err: error.message }, 'status report failed; retrying on the next tick');
    });
  const timer = setInterval(reportSafely, options.statusIntervalMs ?? 30_000);
  timer.unref();

  for (const client of clients) client.start();
  void reportSafely();
  const loader = options.loader ? startModelLoader({ ...options.loader, graphqlUrl, registrationKey: options.registrationKey, logger }) : undefined;
  reconciler = runtimes
    ? startRuntimeReconciler({ graphqlUrl, registrationKey: options.registrationKey, send, runtimes, intervalMs: options.runtimeIntervalMs ?? 15_000, logger })
    : undefined;
  let closed = false;
  return {
    agentId,
    clusterId: cluster.clusterId,
    clusterName: cluster.clusterName,
    executor,
    connected: isConnected,
    whenConnected: () => (isConnected() ? Promise.resolve() : new Promise<void>((resolve) => connectedWaiters.push(resolve))),
    reportStatus,
    reconcileRuntimes: async () => {
      await reconciler?.reconcileNow();
    },
    dropConnections: () => clients.forEach((c) => c.dropConnection()),
    refused,
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      await loader?.close();
      await reconciler?.close();
      // Trainers stop with the agent; reports already queued still go out while the tunnels close.
      await autoscaled?.close();
      await executor.close();
      await reporter.close();
      // The parked polls are answered, so the tunnels close without waiting for them.
      outbox.close();
      await Promise.all(clients.map((c) => c.stop()));
      server.close();
    },
  };
}

/** A request body, refused past `limit` bytes. */
async function readBody(req: Http2ServerRequest, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new Error(`request body over ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function json(res: Http2ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return void res.stream.close();
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

async function createExecutor(options: AgentOptions, reporter: JobReporter, logger: Logger): Promise<Executor> {
  if (options.executor === 'local') {
    const jobs = createLocalJobHost({
      trainerCommand: options.jobs?.trainerCommand,
      runBatchJobs: options.jobs?.runBatchJobs ?? false,
      openaiBaseUrl: new URL('/v1', options.controlPlaneUrl).toString(),
      objectStore: options.objectStore,
      workDir: options.jobs?.workDir ?? path.join(options.cacheDir ?? os.tmpdir(), 'jobs'),
      reporter,
      logger,
    });
    return createLocalExecutor(logger, { objectStore: options.objectStore, cacheDir: options.cacheDir, jobs });
  }
  const { createKubernetesExecutor, jobSettingsFromEnv } = await import('./kubernetesExecutor.js');
  const jobs = options.jobs?.kubernetes ?? jobSettingsFromEnv();
  return createKubernetesExecutor({
    kubeconfig: options.kubeconfig,
    objectStore: options.objectStore,
    reporter,
    // Batch jobs' pods reach the OpenAI API where the agent reaches the control plane, unless told otherwise.
    jobs: { ...jobs, openaiBaseUrl: jobs.openaiBaseUrl ?? new URL('/v1', options.controlPlaneUrl).toString() },
    logger,
  });
}
