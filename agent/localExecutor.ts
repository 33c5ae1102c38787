import { execFile } from 'node:child_process';
import os from 'node:os';
import type { Logger } from '../lib/logging.js';
import type { ObjectStore } from '../lib/objectStore/index.js';
import type { ClusterStatusReport, Executor, JobHost } from './executor.js';
import { createLocalRuntimeHost } from './localRuntimeHost.js';

/** GPUs of this machine as `nvidia-smi` lists them; none when it is absent or fails. */
function detectGpus(): Promise<string[]> {
  return new Promise((resolve) => {
    execFile('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader'], { timeout: 5000 }, (error, stdout) => {
      if (error) return resolve([]);
      resolve(
        stdout
          .split('\n')
          .map((line) => line.trim())
          .filter(Boolean),
      );
    });
  });
}

/**
 * The local executor: this machine is the cluster's only node (`mariner up`). Work runs as child
 * processes, added by the jobs and inference issues; there is no Kubernetes API to proxy.
 */
export async function createLocalExecutor(
  logger: Logger,
  options: { objectStore?: ObjectStore | undefined; cacheDir?: string | undefined; jobs?: JobHost | null } = {},
): Promise<Executor> {
  const gpus = await detectGpus();
  // Inference runtimes need the models' weights: the platform's object store and a local cache.
  const runtimes =
    options.objectStore && options.cacheDir ? createLocalRuntimeHost({ objectStore: options.objectStore, cacheDir: options.cacheDir, logger }) : null;
  logger.debug({ gpus }, 'local executor');
  return {
    kind: 'local',
    kubeApi: null,
    runtimes,
    jobs: options.jobs ?? null,
    async clusterStatus(): Promise<ClusterStatusReport> {
      return {
        nodes: [
          {
            name: os.hostname().slice(0, 253) || 'localhost',
            ready: true,
            gpuCapacity: gpus.length,
            gpuAllocatable: gpus.length,
            gpuProduct: gpus[0] ?? null,
            cpuCores: os.cpus().length,
            memoryBytes: os.totalmem(),
          },
        ],
        gpuCapacity: gpus.length,
        gpuAllocated: 0,
        gpuPods: [],
        provisionableResources: [],
      };
    },
    async applyConfig(config) {
      if (config?.timeSlicingGpus) logger.info({ config }, 'GPU time-slicing applies to Kubernetes clusters only; the local executor ignores it');
    },
    async close() {
      await options.jobs?.close();
      await runtimes?.close();
    },
  };
}
