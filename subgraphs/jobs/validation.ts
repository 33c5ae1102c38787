import { randomInt } from 'node:crypto';
import { badInput } from '../../lib/errors.js';
import { assertId } from '../../lib/ids.js';
import type { CreateFineTuningJobInput } from './generated/resolvers.js';
import type { HyperparametersValue, IntegrationValue, MethodValue } from './store.js';

/** LLMariner §4a: suffix ≤ 18 characters; lowercase letters, digits and dashes keep model ids clean. */
const SUFFIX = /^[a-z0-9][a-z0-9-]{0,17}$/;
/** OpenAI metadata limits: 16 pairs, keys ≤ 64 characters, values ≤ 512. */
const METADATA_PAIRS = 16;
const MAX_GPUS = 64;

export interface ValidJobInput {
  model: string;
  trainingFile: string;
  validationFile: string | null;
  suffix: string;
  method: MethodValue;
  integrations: IntegrationValue[];
  seed: number;
  /** Null: the scheduler decides (1 where the cluster has GPUs, else 0). */
  gpuCount: number | null;
  metadata: Record<string, string> | null;
}

function integerIn(value: number | null | undefined, field: string, min: number, max: number): number | null {
  if (value === null || value === undefined) return null;
  if (!Number.isInteger(value) || value < min || value > max) throw badInput(`${field} must be an integer from ${min} to ${max}`, field);
  return value;
}

function hyperparameters(input: CreateFineTuningJobInput['hyperparameters'], field: string, method: string): HyperparametersValue {
  const lr = input?.learningRateMultiplier ?? null;
  if (lr !== null && !(Number.isFinite(lr) && lr > 0 && lr <= 100)) throw badInput(`${field}.learningRateMultiplier must be greater than 0 and at most 100`, `${field}.learningRateMultiplier`);
  const beta = input?.beta ?? null;
  if (beta !== null && method !== 'dpo') throw badInput(`${field}.beta applies to the dpo method only`, `${field}.beta`);
  if (beta !== null && !(Number.isFinite(beta) && beta > 0 && beta <= 2)) throw badInput(`${field}.beta must be greater than 0 and at most 2`, `${field}.beta`);
  return {
    batchSize: integerIn(input?.batchSize, `${field}.batchSize`, 1, 256),
    learningRateMultiplier: lr,
    nEpochs: integerIn(input?.nEpochs, `${field}.nEpochs`, 1, 50),
    beta,
  };
}

function metadata(value: unknown): Record<string, string> | null {
  if (value === null || value === undefined) return null;
  if (typeof value !== 'object' || Array.isArray(value)) throw badInput('input.metadata must be an object of string values', 'input.metadata');
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > METADATA_PAIRS) throw badInput(`input.metadata has at most ${METADATA_PAIRS} pairs`, 'input.metadata');
  for (const [key, v] of entries) {
    if (key.length === 0 || key.length > 64) throw badInput('input.metadata keys have 1 to 64 characters', 'input.metadata');
    if (typeof v !== 'string' || v.length > 512) throw badInput(`input.metadata.${key.slice(0, 64)} must be a string of at most 512 characters`, 'input.metadata');
  }
  return Object.fromEntries(entries) as Record<string, string>;
}

/** The checks that need nothing but the input (reference §4a, OpenAI create fine-tuning job). */
export function validJobInput(input: CreateFineTuningJobInput): ValidJobInput {
  const model = input.model.trim();
  if (model === '') throw badInput('input.model is required', 'input.model');
  const trainingFile = assertId('file', input.trainingFile, 'input.trainingFile');
  const validationFile = input.validationFile ? assertId('file', input.validationFile, 'input.validationFile') : null;
  if (!SUFFIX.test(input.suffix)) throw badInput('input.suffix must be 1–18 lowercase letters, digits or dashes, starting with a letter or digit', 'input.suffix');
  const type = input.method?.type ?? 'supervised';
  if (type !== 'supervised' && type !== 'dpo') throw badInput('input.method.type must be supervised or dpo', 'input.method.type');
  if (input.method?.hyperparameters && input.hyperparameters) {
    throw badInput('give hyperparameters either in input.method.hyperparameters or in input.hyperparameters, not both', 'input.hyperparameters');
  }
  const method: MethodValue = {
    type,
    hyperparameters: input.method?.hyperparameters
      ? hyperparameters(input.method.hyperparameters, 'input.method.hyperparameters', type)
      : hyperparameters(input.hyperparameters, 'input.hyperparameters', type),
  };
  const integrations = (input.integrations ?? []).map((integration, i): IntegrationValue => {
    const field = `input.integrations.${i}`;
    if (integration.type !== 'wandb') throw badInput(`${field}.type: only wandb integrations are supported`, `${field}.type`);
    const project = integration.wandb.project.trim();
    if (project === '' || project.length > 128) throw badInput(`${field}.wandb.project must have 1 to 128 characters`, `${field}.wandb.project`);
    return { type: 'wandb', wandb: { project, name: integration.wandb.name ?? null, entity: integration.wandb.entity ?? null, tags: integration.wandb.tags ?? [] } };
  });
  const meta = metadata(input.metadata);
  let gpuCount = integerIn(input.gpuCount, 'input.gpuCount', 0, MAX_GPUS);
  // LLMariner: metadata `resources.gpu` sets the GPU count when resources.gpu_count does not.
  if (gpuCount === null && meta?.['resources.gpu'] !== undefined) {
    const fromMetadata = Number(meta['resources.gpu']);
    gpuCount = integerIn(Number.isInteger(fromMetadata) ? fromMetadata : -1, 'input.metadata', 0, MAX_GPUS);
  }
  const seed = integerIn(input.seed, 'input.seed', 0, 2 ** 31 - 1) ?? randomInt(0, 2 ** 31 - 1);
  return { model, trainingFile, validationFile, suffix: input.suffix, method, integrations, seed, gpuCount, metadata: meta };
}
