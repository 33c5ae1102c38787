import { CoreV1Api, KubeConfig, type V1ConfigMap } from '@kubernetes/client-node';
import type { Logger } from '../lib/logging.js';
import type { ClusterConfig, Executor } from './executor.js';
import { collectClusterStatus, createKubeApiProxy, deviceConfigMap } from './kubernetes/index.js';

/** Loads the agent's Kubernetes credentials: a kubeconfig path, else in-cluster, else the default chain. */
export function loadKubeConfig(kubeconfig: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfig) kc.loadFromFile(kubeconfig);
  else if (process.env['KUBERNETES_SERVICE_HOST']) kc.loadFromCluster();
  else kc.loadFromDefault();
  return kc;
}

function statusCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

/**
 * The Kubernetes executor: the cluster's API server through @kubernetes/client-node. Status comes
 * from nodes and pods; GPU configuration becomes the NVIDIA device-plugin ConfigMap; users'
 * `/v1/sessions` requests are forwarded with the agent's credentials.
 */
export async function createKubernetesExecutor(options: { kubeconfig?: string | undefined; kubeConfig?: KubeConfig; logger: Logger }): Promise<Executor> {
  const kc = options.kubeConfig ?? loadKubeConfig(options.kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  return {
    kind: 'kubernetes',
    kubeApi: createKubeApiProxy(kc),
    // vLLM/Ollama workloads on Kubernetes: the inference issue's next part.
    runtimes: null,
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
        await core.replaceNamespacedConfigMap({ name, namespace, body: { ...manifest, metadata: { ...manifest.metadata, resourceVersion: existing.metadata?.resourceVersion } } });
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
    async close() {},
  };
}
