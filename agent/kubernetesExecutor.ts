import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CoreV1Api, KubeConfig, type V1ConfigMap } from '@kubernetes/client-node';
import { ErrorCode, MarinerError } from '../lib/errors.js';
import { commandSetting, loadConfig } from '../lib/config.js';
import type { ObjectStore } from '../lib/objectStore/index.js';
import type { JobReporter } from './jobReporter.js';
import { createKubernetesJobHost, type KubernetesJobSettings } from './kubernetes/jobs.js';
import type { Logger } from '../lib/logging.js';
import type { ClusterConfig, Executor } from './executor.js';
import { statusCode } from './kubernetes/apiErrors.js';
import { collectClusterStatus, createKubeApiProxy, deviceConfigMap } from './kubernetes/index.js';
import { createKubernetesRuntimeHost, type KubernetesRuntimeHostOptions } from './kubernetes/runtimes.js';
import { createProjectRoleBindings } from './kubernetes/projectRoleBindings.js';
import { createKueueQueues } from './kubernetes/kueueQueues.js';

/** How the Kubernetes executor runs inference runtimes; the namespace defaults as in `runtimeSettingsFromEnv`. */
export type KubernetesRuntimeSettings = Omit<KubernetesRuntimeHostOptions, 'kubeConfig' | 'logger' | 'namespace'> & { namespace?: string | undefined };

/**
 * Loads the agent's Kubernetes credentials: a kubeconfig path, else in-cluster, else the default chain
 * (KUBECONFIG, ~/.kube/config). With none of them there is no cluster to talk to: the agent stops at once
 * saying so (issue 24: client-node's fallback, a localhost:8080 cluster, failed every 15 s with "HTTP
 * protocol is not allowed when skipTLSVerify is not set or false", never saying no kubeconfig was found).
 */
export function loadKubeConfig(kubeconfig: string | undefined, env: NodeJS.ProcessEnv = process.env, home = os.homedir()): KubeConfig {
  const kc = new KubeConfig();
  const missing = (where: string) =>
    new MarinerError(
      ErrorCode.FAILED_PRECONDITION,
      `no kubeconfig found at ${where}; run with --executor local for one machine, or give --kubeconfig PATH (or KUBECONFIG) for a Kubernetes cluster`,
    );
  if (kubeconfig) {
    if (!existsSync(kubeconfig)) throw missing(kubeconfig);
    kc.loadFromFile(kubeconfig);
  } else if (env['KUBERNETES_SERVICE_HOST']) kc.loadFromCluster();
  else {
    const candidates = env['KUBECONFIG'] ? env['KUBECONFIG'].split(path.delimiter).filter(Boolean) : [path.join(home, '.kube', 'config')];
    if (!candidates.some((file) => existsSync(file))) throw missing(candidates.join(path.delimiter));
    kc.loadFromDefault();
  }
  return kc;
}

/**
 * The runtime settings of an agent started from the command line, or null when MARINER_RUNTIMES=off
 * (a cluster for jobs only). MARINER_RUNTIME_NAMESPACE (default: the agent's own namespace in a pod,
 * the kubeconfig context's namespace otherwise, else `mariner-runtimes`); the platform's object store
 * (MARINER_OBJECT_STORE / MARINER_S3_*, as the loader uses it); MARINER_RUNTIME_S3_SECRET, the Secret
 * the pods copy weights with; MARINER_RUNTIME_IMAGE_{VLLM,LLAMA_CPP,LLAMA_CPP_CUDA,OLLAMA,S3_COPIER}.
 */
export function runtimeSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): KubernetesRuntimeSettings | null {
  if (env['MARINER_RUNTIMES'] === 'off') return null;
  const image = (name: string) => env[`MARINER_RUNTIME_IMAGE_${name}`] || undefined;
  const images = {
    vllm: image('VLLM'),
    llamaCpp: image('LLAMA_CPP'),
    llamaCppCuda: image('LLAMA_CPP_CUDA'),
    ollama: image('OLLAMA'),
    s3Copier: image('S3_COPIER'),
  };
  return {
    namespace: env['MARINER_RUNTIME_NAMESPACE'] || undefined,
    objectStore: loadConfig(env).objectStore,
    objectStoreSecret: env['MARINER_RUNTIME_S3_SECRET'] || undefined,
    images: Object.fromEntries(Object.entries(images).filter(([, value]) => value !== undefined)),
  };
}

/**
 * How the Kubernetes executor runs fine-tuning Jobs, from the agent's environment:
 * MARINER_FINE_TUNING_IMAGE (default: LLMariner's fine-tuning image driven by a generated command,
 * kubernetes/fineTuningCommand.ts), MARINER_FINE_TUNING_COMMAND (the trainer's argv in that image), MARINER_KUEUE_DEFAULT_QUEUE (the queue of projects that name none),
 * MARINER_WANDB_API_KEY_SECRET and MARINER_WANDB_API_KEY_SECRET_KEY (default `apiKey`): the Secret in the
 * jobs' namespaces holding the W&B API key, for jobs with a `wandb` integration.
 */
export function jobSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): KubernetesJobSettings {
  const wandbSecret = env['MARINER_WANDB_API_KEY_SECRET'] || undefined;
  return {
    image: env['MARINER_FINE_TUNING_IMAGE'] || undefined,
    command: commandSetting(env, 'MARINER_FINE_TUNING_COMMAND'),
    defaultQueue: env['MARINER_KUEUE_DEFAULT_QUEUE'] || undefined,
    wandbApiKeySecret: wandbSecret ? { name: wandbSecret, key: env['MARINER_WANDB_API_KEY_SECRET_KEY'] || 'apiKey' } : undefined,
  };
}

/**
 * Whom the agent binds the project ClusterRole to, from the chart (`worker.namespaces: dynamic`):
 * MARINER_AGENT_PROJECT_CLUSTER_ROLE (unset: the chart binds static Roles, the agent binds nothing),
 * MARINER_AGENT_SERVICE_ACCOUNT (its ServiceAccount, in its own namespace) and MARINER_RESERVED_NAMESPACES
 * (never bound, whatever is assigned).
 */
export function projectRoleSettingsFromEnv(
  env: NodeJS.ProcessEnv = process.env,
): { clusterRole: string; serviceAccount: string; reservedNamespaces: string[] } | null {
  const clusterRole = env['MARINER_AGENT_PROJECT_CLUSTER_ROLE'];
  if (!clusterRole) return null;
  const serviceAccount = env['MARINER_AGENT_SERVICE_ACCOUNT'];
  if (!serviceAccount)
    throw new Error('MARINER_AGENT_SERVICE_ACCOUNT is required with MARINER_AGENT_PROJECT_CLUSTER_ROLE: the ServiceAccount the project role is bound to');
  return { clusterRole, serviceAccount, reservedNamespaces: loadConfig(env).reservedNamespaces };
}

/**
 * The Kubernetes executor: the cluster's API server through @kubernetes/client-node. Status comes
 * from nodes and pods; GPU configuration becomes the NVIDIA device-plugin ConfigMap; users'
 * `/v1/sessions` requests are forwarded with the agent's credentials; inference runtimes run as one
 * StatefulSet per active model (`runtimes`: from the environment when absent; null runs none).
 */
export async function createKubernetesExecutor(options: {
  kubeconfig?: string | undefined;
  kubeConfig?: KubeConfig;
  runtimes?: KubernetesRuntimeSettings | null;
  /** Fine-tuning Jobs: their settings (from the environment when absent), and where their reports go. */
  jobs?: KubernetesJobSettings | undefined;
  /** The platform's object store (S3): inputs and outputs of Jobs are presigned URLs into it. */
  objectStore?: ObjectStore | undefined;
  reporter?: JobReporter | undefined;
  /** Binding the project ClusterRole as namespaces are assigned (projectRoleSettingsFromEnv when absent; null: not). */
  projectRole?: ReturnType<typeof projectRoleSettingsFromEnv>;
  logger: Logger;
}): Promise<Executor> {
  const kc = options.kubeConfig ?? loadKubeConfig(options.kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const runtimeSettings = options.runtimes === undefined ? runtimeSettingsFromEnv() : options.runtimes;
  // In a pod, the context's namespace is the agent's own (client-node reads the service account's).
  const contextNamespace = kc.getContextObject(kc.getCurrentContext())?.namespace;
  const runtimes = runtimeSettings
    ? createKubernetesRuntimeHost({
        ...runtimeSettings,
        namespace: runtimeSettings.namespace ?? contextNamespace ?? 'mariner-runtimes',
        kubeConfig: kc,
        logger: options.logger,
      })
    : null;
  const jobs = options.reporter
    ? createKubernetesJobHost({
        kubeConfig: kc,
        objectStore: options.objectStore,
        reporter: options.reporter,
        logger: options.logger,
        settings: options.jobs ?? jobSettingsFromEnv(),
        // Jobs in a namespace with a GPU quota carry its queue's label (`kueue` is made below, read later).
        kueueQueueIn: (namespace) => kueue?.queueIn(namespace) ?? null,
      })
    : null;
  const projectRole = options.projectRole === undefined ? projectRoleSettingsFromEnv() : options.projectRole;
  const projectRoleBindings = projectRole
    ? createProjectRoleBindings({
        kubeConfig: kc,
        clusterRole: projectRole.clusterRole,
        serviceAccount: { name: projectRole.serviceAccount, namespace: contextNamespace ?? 'default' },
        reservedNamespaces: projectRole.reservedNamespaces,
        logger: options.logger,
      })
    : null;
  // Kueue's queues of the projects' GPU quotas (MARINER_KUEUE_QUEUES=off: the operator keeps them by hand).
  const kueue =
    process.env['MARINER_KUEUE_QUEUES'] === 'off'
      ? null
      : createKueueQueues({ kubeConfig: kc, defaultQueue: (options.jobs ?? jobSettingsFromEnv()).defaultQueue, logger: options.logger });
  return {
    kind: 'kubernetes',
    kubeApi: createKubeApiProxy(kc),
    runtimes,
    jobs,
    clusterStatus: () => collectClusterStatus(core),
    async applyConfig(config: ClusterConfig | null) {
      const manifest = deviceConfigMap({ timeSlicingGpus: config?.timeSlicingGpus ?? null }) as V1ConfigMap;
      const namespace = manifest.metadata!.namespace!;
      const name = manifest.metadata!.name!;
      let existing: V1ConfigMap | undefined;
      try {
        existing = await core.readNamespacedConfigMap({ name, namespace });
      } catch (error) {
        if (statusCode(error) !== 404) throw error;
      }
      // No configuration and none applied before: leave the device plugin alone.
      if (!existing && !config?.timeSlicingGpus) return;
      if (existing) {
        await core.replaceNamespacedConfigMap({
          name,
          namespace,
          body: { ...manifest, metadata: { ...manifest.metadata, resourceVersion: existing.metadata?.resourceVersion } },
        });
      } else {
        try {
          await core.createNamespacedConfigMap({ namespace, body: manifest });
        } catch (error) {
          if (statusCode(error) === 404) throw new Error(`namespace ${namespace} does not exist: install the NVIDIA GPU operator to use GPU time-slicing`);
          throw error;
        }
      }
      options.logger.info({ namespace, name, timeSlicingGpus: config?.timeSlicingGpus ?? null }, 'applied the GPU device-plugin configuration');
    },
    ...(projectRoleBindings && {
      async followProjectNamespaces(namespaces: string[]) {
        await projectRoleBindings.reconcile(namespaces);
      },
    }),
    ...(kueue && {
      async followGpuQuotas(quotas) {
        await kueue.reconcile(quotas);
        return kueue.status(quotas);
      },
    }),
    async close() {
      await jobs?.close();
      await runtimes?.close();
    },
  };
}
