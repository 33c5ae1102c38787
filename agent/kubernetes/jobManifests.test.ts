import { describe, expect, it } from 'vitest';
import { JobRefusedError } from '../executor.js';
import { jobSettingsFromEnv } from '../kubernetesExecutor.js';
import { fineTuningManifests, trainerWandb, type FineTuningManifestInput } from './jobManifests.js';

const WANDB = { type: 'wandb' as const, wandb: { project: 'llm-sft', name: 'run-7', entity: 'acme', tags: ['lora', 'nightly'] } };

function input(wandb: FineTuningManifestInput['wandb']): FineTuningManifestInput {
  return {
    jobId: 'ftjob-abc',
    attempt: 1,
    namespace: 'team-a',
    image: 'registry.example.com/trainer:1',
    command: ['python', 'sft.py'],
    gpuCount: 1,
    kueueQueueName: null,
    method: 'supervised',
    hyperparameters: { nEpochs: 1 },
    seed: 42,
    baseModelId: 'llama-hf',
    wandb,
    urls: {
      training: 'https://s3.example.com/training?sig',
      validation: null,
      modelFiles: [{ path: 'config.json', url: 'https://s3.example.com/config?sig' }],
      outputs: { 'adapter_config.json': 'https://s3.example.com/a?sig', 'adapter_model.safetensors': 'https://s3.example.com/b?sig' },
    },
    ttlSecondsAfterFinished: 3600,
  };
}

const trainerEnv = (wandb: FineTuningManifestInput['wandb']) => fineTuningManifests(input(wandb)).job.spec!.template.spec!.containers[0]!.env!;

describe("the fine-tuning Job's W&B environment", () => {
  it('gives the trainer the integration as WANDB_* and the API key by reference to the configured Secret', () => {
    const env = trainerEnv(trainerWandb([WANDB], { name: 'wandb', key: 'apiKey' }));
    expect(env.filter((e) => e.name.startsWith('WANDB_'))).toEqual([
      { name: 'WANDB_API_KEY', valueFrom: { secretKeyRef: { name: 'wandb', key: 'apiKey' } } },
      { name: 'WANDB_PROJECT', value: 'llm-sft' },
      { name: 'WANDB_NAME', value: 'run-7' },
      { name: 'WANDB_ENTITY', value: 'acme' },
      { name: 'WANDB_TAGS', value: 'lora,nightly' },
    ]);
  });

  it('leaves out what the integration does not give, and all of it for a job without one', () => {
    const minimal = trainerEnv(trainerWandb([{ type: 'wandb', wandb: { project: 'p', name: null, entity: null, tags: [] } }], { name: 'wandb', key: 'token' }));
    expect(minimal.filter((e) => e.name.startsWith('WANDB_')).map((e) => e.name)).toEqual(['WANDB_API_KEY', 'WANDB_PROJECT']);
    expect(trainerWandb([], { name: 'wandb', key: 'apiKey' })).toBeNull();
    expect(trainerWandb(undefined, undefined)).toBeNull();
    expect(trainerEnv(null).some((e) => e.name.startsWith('WANDB_'))).toBe(false);
  });

  it('refuses a job that asks for W&B on a cluster with no API key Secret, saying what to set', () => {
    expect(() => trainerWandb([WANDB], undefined)).toThrow(JobRefusedError);
    expect(() => trainerWandb([WANDB], undefined)).toThrow(/MARINER_WANDB_API_KEY_SECRET/);
  });

  it("reads the Secret's name and key from the agent's environment (key `apiKey` by default)", () => {
    expect(jobSettingsFromEnv({ MARINER_WANDB_API_KEY_SECRET: 'wandb' }).wandbApiKeySecret).toEqual({ name: 'wandb', key: 'apiKey' });
    expect(jobSettingsFromEnv({ MARINER_WANDB_API_KEY_SECRET: 'wandb', MARINER_WANDB_API_KEY_SECRET_KEY: 'key' }).wandbApiKeySecret).toEqual({
      name: 'wandb',
      key: 'key',
    });
    expect(jobSettingsFromEnv({}).wandbApiKeySecret).toBeUndefined();
  });
});
