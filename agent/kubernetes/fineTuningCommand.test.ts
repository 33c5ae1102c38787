import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { FineTuningSpec } from '../../lib/jobSpec.js';
import { defaultTrainer, DEFAULT_FINE_TUNING_IMAGE, fineTuningCommand, GGML_ADAPTER_FILE, type TrainerSpec } from './fineTuningCommand.js';
import { fineTuningManifests } from './jobManifests.js';

// Golden files: the default trainer's generated command, byte for byte, as LLMariner's dispatcher tests
// its cmd.tpl. UPDATE_GOLDEN=1 npx vitest run agent/kubernetes/fineTuningCommand.test.ts rewrites them.

const UPDATE = process.env['UPDATE_GOLDEN'] === '1';
const golden = (name: string) => new URL(`./testdata/${name}`, import.meta.url);

function expectGolden(name: string, actual: string): void {
  if (UPDATE) writeFileSync(golden(name), actual);
  const expected = readFileSync(golden(name), 'utf8');
  // Byte for byte: a changed flag, quote or newline is a different command.
  expect(Buffer.from(actual).equals(Buffer.from(expected)), `${name} differs from the generated command:\n${actual}`).toBe(true);
}

const spec = (overrides: Partial<TrainerSpec> & { hyperparameters?: Partial<FineTuningSpec['method']['hyperparameters']> } = {}): TrainerSpec => ({
  method: {
    type: 'supervised',
    hyperparameters: { nEpochs: null, batchSize: null, learningRateMultiplier: null, beta: null, ...overrides.hyperparameters },
  },
  gpuCount: overrides.gpuCount ?? 1,
  validationFile: overrides.validationFile ?? null,
  integrations: overrides.integrations ?? [],
});

describe('the default trainer’s generated command (golden files)', () => {
  it('one GPU, hyperparameters left to the trainer (OpenAI "auto"): 3 epochs, batch 4, learning rate 2e-4', () => {
    expectGolden('sft-defaults.sh', fineTuningCommand(spec()));
  });

  it('the job’s hyperparameters (epochs, batch size, learning-rate multiplier) and a validation file (the dataset’s test split)', () => {
    expectGolden(
      'sft-hyperparameters.sh',
      fineTuningCommand(
        spec({
          hyperparameters: { nEpochs: 5, batchSize: 8, learningRateMultiplier: 0.5 },
          validationFile: { id: 'file-v', objectKey: 'files/v.jsonl', filename: 'v.jsonl' },
        }),
      ),
    );
  });

  it('several GPUs: one process per GPU', () => {
    expectGolden('sft-multi-gpu.sh', fineTuningCommand(spec({ gpuCount: 4, hyperparameters: { nEpochs: 2, batchSize: 2, learningRateMultiplier: 1.5 } })));
  });

  it('a W&B integration: sft.py reports to the project the pod’s WANDB_PROJECT names', () => {
    const wandb = { project: 'llm-sft', name: null, entity: null, tags: [] };
    expectGolden('sft-wandb.sh', fineTuningCommand(spec({ integrations: [{ type: 'wandb', wandb }] })));
  });

  it('refuses what sft.py cannot do, with the reason: DPO, no GPU, nonsense hyperparameters', () => {
    expect(() => fineTuningCommand(spec({ gpuCount: 0 }))).toThrow(/needs a GPU: give the job gpu_count >= 1, or set MARINER_FINE_TUNING_IMAGE/);
    expect(() => fineTuningCommand({ ...spec(), method: { ...spec().method, type: 'dpo' } })).toThrow(
      /runs supervised fine-tuning only, not dpo: set MARINER_FINE_TUNING_IMAGE/,
    );
    expect(() => fineTuningCommand(spec({ hyperparameters: { nEpochs: 0 } }))).toThrow('n_epochs must be a positive integer, not 0');
    expect(() => fineTuningCommand(spec({ hyperparameters: { batchSize: 1.5 } }))).toThrow('batch_size must be a positive integer, not 1.5');
    expect(() => fineTuningCommand(spec({ hyperparameters: { learningRateMultiplier: -1 } }))).toThrow('learning_rate_multiplier must be a positive number');
  });

  it('runs in LLMariner’s pinned image, after the pod’s downloads, as non-root, with a presigned PUT for the GGML adapter', () => {
    const trainer = defaultTrainer(spec({ gpuCount: 2 }));
    expect(trainer.image).toBe(DEFAULT_FINE_TUNING_IMAGE);
    expect(DEFAULT_FINE_TUNING_IMAGE).toMatch(/^public\.ecr\.aws\/cloudnatix\/llmariner\/fine-tuning:\d+\.\d+\.\d+$/);
    const { job, secret } = fineTuningManifests({
      jobId: 'ftjob-abc',
      attempt: 1,
      namespace: 'team',
      image: trainer.image,
      command: trainer.command,
      gpuCount: 2,
      kueueQueueName: 'team-a',
      method: 'supervised',
      hyperparameters: {},
      seed: 42,
      baseModelId: 'llama',
      wandb: null,
      urls: {
        training: 'https://s3/t',
        validation: null,
        modelFiles: [{ path: 'config.json', url: 'https://s3/c' }],
        outputs: { 'adapter_config.json': 'https://s3/a', 'adapter_model.safetensors': 'https://s3/m' },
        extraOutputs: { [GGML_ADAPTER_FILE]: 'https://s3/g' },
      },
      ttlSecondsAfterFinished: 600,
    });
    const pod = job.spec!.template.spec!;
    const container = pod.containers[0]!;
    expect(container.image).toBe(DEFAULT_FINE_TUNING_IMAGE);
    expect(container.command!.slice(-3)).toEqual(trainer.command.slice(1));
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000 });
    expect(container.securityContext).toMatchObject({ allowPrivilegeEscalation: false });
    expect(container.resources!.limits).toEqual({ 'nvidia.com/gpu': '2' });
    expect(job.metadata!.labels).toMatchObject({ 'kueue.x-k8s.io/queue-name': 'team-a' });
    expect(secret.stringData![`output-${GGML_ADAPTER_FILE}`]).toBe('https://s3/g');
  });
});
