/**
 * Notebooks on Kubernetes: a Secret (its token and API key), a Deployment and a Service
 * (jobManifests.ts `notebookManifests`). Stopped by scaling the Deployment to zero, started again by
 * scaling it to one, deleted with its objects. RUNNING once the Deployment has a ready replica.
 */
import type { AppsV1Api, CoreV1Api, V1Deployment } from '@kubernetes/client-node';
import type { NotebookSpec } from '../../lib/jobSpec.js';
import type { Logger } from '../../lib/logging.js';
import { JobRefusedError, type DispatchedJob } from '../executor.js';
import type { JobReporter } from '../jobReporter.js';
import { orNotFound } from './apiErrors.js';
import type { Followed, FollowedJobs } from './followedJobs.js';
import { ATTEMPT_ANNOTATION, notebookManifests } from './jobManifests.js';
import type { ResolvedJobSettings } from './jobSettings.js';

export function createNotebookHost(options: {
  apps: AppsV1Api;
  core: CoreV1Api;
  followed: FollowedJobs;
  reporter: JobReporter;
  logger: Logger;
  settings: ResolvedJobSettings;
}) {
  const { apps, core, followed, reporter, logger, settings } = options;

  const read = (name: string, namespace: string): Promise<V1Deployment | null> => orNotFound(apps.readNamespacedDeployment({ name, namespace }));

  /** Deletes a notebook's objects; true when there was any. */
  async function remove(name: string, namespace: string): Promise<boolean> {
    const results = await Promise.all([
      orNotFound(apps.deleteNamespacedDeployment({ name, namespace })),
      orNotFound(core.deleteNamespacedService({ name, namespace })),
      orNotFound(core.deleteNamespacedSecret({ name: `${name}-secrets`, namespace })),
    ]);
    return results.some((deleted) => deleted !== null);
  }

  return {
    read,
    remove,

    /** A notebook's Secret, Deployment and Service, replacing what an earlier attempt left. */
    async start(job: DispatchedJob, spec: NotebookSpec, namespace: string, attempt: number): Promise<'started' | 'running'> {
      if (!spec.secrets) throw new JobRefusedError('the notebook came without its token and API key');
      const objects = notebookManifests({
        jobId: job.id,
        attempt,
        namespace,
        name: spec.name,
        image: spec.image,
        resources: spec.resources,
        envs: spec.envs,
        ports: spec.ports,
        gpuCount: spec.gpuCount,
        kueueQueueName: spec.kueueQueueName ?? settings.defaultQueue ?? null,
        secrets: spec.secrets,
        openaiBaseUrl: settings.openaiBaseUrl ?? null,
        basePath: spec.basePath ?? null,
      });
      const name = objects.deployment.metadata!.name!;
      const current = await read(name, namespace);
      if (current?.metadata?.annotations?.[ATTEMPT_ANNOTATION] === String(attempt)) {
        followed.follow(job.id, spec, attempt);
        return 'running';
      }
      await remove(name, namespace);
      await core.createNamespacedSecret({ namespace, body: objects.secret as never });
      await core.createNamespacedService({ namespace, body: objects.service as never });
      await apps.createNamespacedDeployment({ namespace, body: objects.deployment as never });
      logger.info({ jobId: job.id, namespace, name }, 'created the notebook');
      followed.follow(job.id, spec, attempt);
      return 'started';
    },

    /** Scales a notebook's Deployment; false when it is not there. */
    async scale(name: string, namespace: string, replicas: number): Promise<boolean> {
      return (
        (await orNotFound(apps.patchNamespacedDeploymentScale({ name, namespace, body: [{ op: 'replace', path: '/spec/replicas', value: replicas }] }))) !==
        null
      );
    },

    /**
     * A notebook is RUNNING once its Deployment has a ready replica (again, after a start). One whose
     * Deployment disappeared without being deleted through the platform is LOST (the control plane
     * creates it anew); a stopped one is left alone.
     */
    async check(entry: Followed): Promise<void> {
      const deployment = await read(entry.name, entry.namespace);
      if (!deployment) return followed.finish(entry, { phase: 'LOST', message: `its Deployment ${entry.namespace}/${entry.name} was deleted` });
      if ((deployment.spec?.replicas ?? 1) === 0) return;
      if (!entry.running && (deployment.status?.readyReplicas ?? 0) > 0) {
        entry.running = true;
        await reporter.phase(entry.jobId, { phase: 'RUNNING' });
      }
    },
  };
}

export type NotebookHost = ReturnType<typeof createNotebookHost>;
