/**
 * What a Job's pods are handed from outside the cluster's API: presigned URLs into the platform's
 * object store (the base model's weights, the training files, the adapter's upload targets, a batch
 * job's data files; no store credentials in pods), and the W&B API key Secret, checked to be there.
 */
import type { CoreV1Api } from '@kubernetes/client-node';
import type { BatchSpec, FineTuningSpec } from '../../lib/jobSpec.js';
import type { ObjectStore } from '../../lib/objectStore/index.js';
import { JobRefusedError } from '../executor.js';
import { orNotFound } from './apiErrors.js';
import { ADAPTER_FILES, trainerWandb, type TrainerWandb } from './jobManifests.js';
import type { ResolvedJobSettings } from './jobSettings.js';

export function createJobInputs(options: { core: CoreV1Api; objectStore: ObjectStore | undefined; settings: ResolvedJobSettings }) {
  const { core, settings } = options;
  const urlTtl = settings.urlTtlSeconds;

  return {
    /** A fine-tuning job's URLs: training and validation files, the base model's files, the adapter's uploads. */
    async fineTuningUrls(spec: FineTuningSpec, extraOutputs: string[] = []) {
      const store = options.objectStore!;
      const sign = (key: string, method: 'GET' | 'PUT') => store.presignedUrl!(key, method, urlTtl);
      const modelKey = store.keyFromUri(spec.baseModel.source);
      if (!modelKey) throw new JobRefusedError(`the base model's weights (${spec.baseModel.source}) are not in this cluster's object store`);
      const modelFiles: { path: string; url: string }[] = [];
      for await (const object of store.list(`${modelKey.replace(/\/+$/, '')}/`)) {
        modelFiles.push({ path: object.key.slice(modelKey.replace(/\/+$/, '').length + 1), url: await sign(object.key, 'GET') });
      }
      if (modelFiles.length === 0) throw new JobRefusedError(`no weights found under ${spec.baseModel.source}`);
      return {
        training: await sign(spec.trainingFile.objectKey, 'GET'),
        validation: spec.validationFile ? await sign(spec.validationFile.objectKey, 'GET') : null,
        modelFiles,
        outputs: Object.fromEntries(await Promise.all(ADAPTER_FILES.map(async (file) => [file, await sign(spec.outputPrefix + file, 'PUT')]))) as Record<
          (typeof ADAPTER_FILES)[number],
          string
        >,
        extraOutputs: Object.fromEntries(await Promise.all(extraOutputs.map(async (file) => [file, await sign(spec.outputPrefix + file, 'PUT')]))) as Record<
          string,
          string
        >,
      };
    },

    /** A batch job's data files, each by its file name. */
    dataFileUrls(spec: BatchSpec) {
      return Promise.all(
        spec.dataFiles.map(async (f) => ({ filename: f.filename, url: await options.objectStore!.presignedUrl!(f.objectKey, 'GET', urlTtl) })),
      );
    },

    /**
     * The trainer's W&B settings. Its API key Secret must be in the job's namespace: a pod that refers to a
     * missing one never starts (CreateContainerConfigError), so the job is refused with the reason instead.
     */
    async wandbFor(spec: FineTuningSpec, namespace: string): Promise<TrainerWandb | null> {
      const wandb = trainerWandb(spec.integrations, settings.wandbApiKeySecret);
      if (!wandb) return null;
      const { name, key } = wandb.apiKeySecret;
      const secret = await orNotFound(core.readNamespacedSecret({ name, namespace }));
      if (!secret) throw new JobRefusedError(`the W&B API key Secret ${name} is not in namespace ${namespace}: create it there, with the key in ${key}`);
      // Only whether the key is there: its value goes nowhere else.
      if (secret.data?.[key] === undefined) throw new JobRefusedError(`the W&B API key Secret ${namespace}/${name} has no key ${key}`);
      return wandb;
    },
  };
}

export type JobInputs = ReturnType<typeof createJobInputs>;
