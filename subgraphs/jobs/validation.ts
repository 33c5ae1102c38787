import { randomInt } from 'node:crypto';
import { badInput } from '../../lib/errors.js';
import { assertId } from '../../lib/ids.js';
import type { NotebookSpec } from '../../lib/jobSpec.js';
import type { CreateBatchJobInput, CreateFineTuningJobInput, CreateNotebookInput } from './generated/resolvers.js';
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
  if (lr !== null && !(Number.isFinite(lr) && lr > 0 && lr <= 100))
    throw badInput(`${field}.learningRateMultiplier must be greater than 0 and at most 100`, `${field}.learningRateMultiplier`);
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
    if (typeof v !== 'string' || v.length > 512)
      throw badInput(`input.metadata.${key.slice(0, 64)} must be a string of at most 512 characters`, 'input.metadata');
  }
  return Object.fromEntries(entries) as Record<string, string>;
}

/**
 * OpenAI makes `suffix` optional: without one the job's base model names its fine-tuned model (its last
 * path segment, lowercased, other characters as dashes, at most 18), `ft` when nothing of it is left.
 * The registration adds 6 characters of the job id, so two such jobs do not collide.
 */
export function defaultSuffix(model: string): string {
  const name = (model.split('/').at(-1) ?? '').toLowerCase().replace(/[^a-z0-9-]+/g, '-');
  const suffix = name.replace(/^-+/, '').slice(0, 18).replace(/-+$/, '');
  return SUFFIX.test(suffix) ? suffix : 'ft';
}

/** The checks that need nothing but the input (reference §4a, OpenAI create fine-tuning job). */
export function validJobInput(input: CreateFineTuningJobInput): ValidJobInput {
  const model = input.model.trim();
  if (model === '') throw badInput('input.model is required', 'input.model');
  const trainingFile = assertId('file', input.trainingFile, 'input.trainingFile');
  const validationFile = input.validationFile ? assertId('file', input.validationFile, 'input.validationFile') : null;
  const suffix = input.suffix ?? defaultSuffix(model);
  if (!SUFFIX.test(suffix)) throw badInput('input.suffix must be 1–18 lowercase letters, digits or dashes, starting with a letter or digit', 'input.suffix');
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
    return {
      type: 'wandb',
      wandb: { project, name: integration.wandb.name ?? null, entity: integration.wandb.entity ?? null, tags: integration.wandb.tags ?? [] },
    };
  });
  const meta = metadata(input.metadata);
  let gpuCount = integerIn(input.gpuCount, 'input.gpuCount', 0, MAX_GPUS);
  // LLMariner: metadata `resources.gpu` sets the GPU count when resources.gpu_count does not.
  if (gpuCount === null && meta?.['resources.gpu'] !== undefined) {
    const fromMetadata = Number(meta['resources.gpu']);
    gpuCount = integerIn(Number.isInteger(fromMetadata) ? fromMetadata : -1, 'input.metadata', 0, MAX_GPUS);
  }
  const seed = integerIn(input.seed, 'input.seed', 0, 2 ** 31 - 1) ?? randomInt(0, 2 ** 31 - 1);
  return { model, trainingFile, validationFile, suffix, method, integrations, seed, gpuCount, metadata: meta };
}

/** LLMariner §4b: scripts are at most 1 MB in all. */
const MAX_SCRIPT_BYTES = 1024 * 1024;
const SCRIPT_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
/** Set by the platform for every job (PyTorch DDP, the OpenAI endpoint): not the user's to set. */
const RESERVED_ENV = new Set(['MASTER_ADDR', 'MASTER_PORT', 'WORLD_SIZE', 'RANK', 'OPENAI_BASE_URL']);
/** An image reference: registry/name[:tag][@digest], as container runtimes accept them. */
const IMAGE_REF = /^[a-z0-9][a-z0-9._-]*(?::[0-9]+)?(?:\/[a-z0-9._-]+)*(?::[A-Za-z0-9._-]{1,128})?(?:@sha256:[a-f0-9]{64})?$/;

/** Environment variables a user sets (batch jobs, notebooks): names, values, and none of the platform's own. */
function validEnvs(given: readonly { name: string; value: string }[], reserved: ReadonlySet<string> = RESERVED_ENV): Record<string, string> {
  const envs: Record<string, string> = {};
  for (const [i, env] of given.entries()) {
    const field = `input.envs.${i}`;
    if (!ENV_NAME.test(env.name)) throw badInput(`${field}.name must be an environment variable name`, `${field}.name`);
    if (reserved.has(env.name) || env.name.startsWith('MARINER_')) throw badInput(`${field}.name: ${env.name} is set by the platform`, `${field}.name`);
    if (env.name in envs) throw badInput(`${field}.name: ${env.name} is given twice`, `${field}.name`);
    if (env.value.length > 32 * 1024) throw badInput(`${field}.value has at most 32768 characters`, `${field}.value`);
    envs[env.name] = env.value;
  }
  if (given.length > 100) throw badInput('input.envs: at most 100 variables', 'input.envs');
  return envs;
}

export interface ValidBatchInput {
  image: string;
  command: string;
  /** Base64, by file name. */
  scripts: Record<string, string>;
  envs: Record<string, string>;
  dataFiles: string[];
  gpuCount: number | null;
  workerCount: number;
}

/** LLMariner POST /v1/batch/jobs: an image preset or reference, a command, scripts ≤ 1 MB, data files, envs, GPUs, workers. */
export function validBatchInput(input: CreateBatchJobInput, presets: Record<string, string>): ValidBatchInput {
  const requested = input.image.trim();
  const image = presets[requested] ?? (IMAGE_REF.test(requested) && (requested.includes('/') || requested.includes(':')) ? requested : undefined);
  if (!image) {
    throw badInput(
      `input.image: "${requested.slice(0, 100)}" is neither a preset (${Object.keys(presets).join(', ') || 'none configured'}) nor an image reference`,
      'input.image',
    );
  }
  const command = input.command.trim();
  if (command === '' || command.length > 16 * 1024) throw badInput('input.command must have 1 to 16384 characters', 'input.command');
  const scripts: Record<string, string> = {};
  let scriptBytes = 0;
  for (const [i, script] of (input.scripts ?? []).entries()) {
    const field = `input.scripts.${i}`;
    if (!SCRIPT_NAME.test(script.name)) throw badInput(`${field}.name must be a file name (letters, digits, . _ -)`, `${field}.name`);
    if (script.name in scripts) throw badInput(`${field}.name: ${script.name} is given twice`, `${field}.name`);
    const bytes = Buffer.from(script.contentBase64, 'base64');
    if (bytes.toString('base64').replace(/=+$/, '') !== script.contentBase64.replace(/\s/g, '').replace(/=+$/, '')) {
      throw badInput(`${field}.contentBase64 is not base64`, `${field}.contentBase64`);
    }
    scriptBytes += bytes.length;
    scripts[script.name] = bytes.toString('base64');
  }
  if (scriptBytes > MAX_SCRIPT_BYTES) throw badInput(`input.scripts: at most 1 MB in all (${scriptBytes} bytes given)`, 'input.scripts');
  const envs = validEnvs(input.envs ?? []);
  const dataFiles = (input.dataFiles ?? []).map((id, i) => assertId('file', id, `input.dataFiles.${i}`));
  if (dataFiles.length > 50) throw badInput('input.dataFiles: at most 50 files', 'input.dataFiles');
  if (new Set(dataFiles).size !== dataFiles.length) throw badInput('input.dataFiles: a file is given twice', 'input.dataFiles');
  return {
    image,
    command,
    scripts,
    envs,
    dataFiles,
    gpuCount: integerIn(input.gpuCount, 'input.gpuCount', 0, MAX_GPUS),
    workerCount: integerIn(input.workerCount, 'input.workerCount', 1, 64) ?? 1,
  };
}

/** A notebook's pod gets these from its Secret (LLMariner notebook.go). */
const NOTEBOOK_RESERVED_ENV = new Set([...RESERVED_ENV, 'OPENAI_API_KEY', 'LLMARINER_API_KEY', 'NOTEBOOK_TOKEN']);

/** Names Kubernetes objects (a Deployment, a Service): a DNS label, short enough for suffixes. */
const NOTEBOOK_NAME = /^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$/;

export interface ValidNotebookInput {
  name: string;
  image: string;
  resources: NotebookSpec['resources'];
  gpuCount: number | null;
  envs: Record<string, string>;
  ports: number[];
}

function amount(input: { requests?: number | null; limits?: number | null } | null | undefined, field: string, max: number) {
  const requests = integerIn(input?.requests, `${field}.requests`, 1, max);
  const limits = integerIn(input?.limits, `${field}.limits`, 1, max);
  if (requests !== null && limits !== null && limits < requests) throw badInput(`${field}.limits must not be below ${field}.requests`, `${field}.limits`);
  return { requests, limits };
}

/** LLMariner POST /v1/workspaces/notebooks: name, image preset or reference, resources, envs, extra ports. */
export function validNotebookInput(input: CreateNotebookInput, presets: Record<string, string>): ValidNotebookInput {
  if (!NOTEBOOK_NAME.test(input.name)) throw badInput('input.name must be 1–40 lowercase letters, digits or dashes, starting with a letter', 'input.name');
  const requested = input.image.trim();
  const image = presets[requested] ?? (IMAGE_REF.test(requested) && (requested.includes('/') || requested.includes(':')) ? requested : undefined);
  if (!image)
    throw badInput(`input.image: "${requested.slice(0, 100)}" is neither a preset (${Object.keys(presets).join(', ')}) nor an image reference`, 'input.image');
  const envs = validEnvs(input.envs ?? [], NOTEBOOK_RESERVED_ENV);
  const ports = [...new Set(input.additionalExposedPorts ?? [])];
  for (const [i, port] of ports.entries()) {
    if (!Number.isInteger(port) || port < 1 || port > 65535 || port === 8888) {
      throw badInput(`input.additionalExposedPorts.${i}: a port from 1 to 65535, other than Jupyter's 8888`, `input.additionalExposedPorts.${i}`);
    }
  }
  if (ports.length > 10) throw badInput('input.additionalExposedPorts: at most 10 ports', 'input.additionalExposedPorts');
  const r = input.resources;
  return {
    name: input.name,
    image,
    resources: {
      cpuMillicores: amount(r?.cpuMillicores, 'input.resources.cpuMillicores', 512_000),
      memoryMegabytes: amount(r?.memoryMegabytes, 'input.resources.memoryMegabytes', 4_096_000),
      storageMegabytes: amount(r?.storageMegabytes, 'input.resources.storageMegabytes', 16_384_000),
    },
    gpuCount: integerIn(r?.gpuCount, 'input.resources.gpuCount', 0, MAX_GPUS),
    envs,
    ports,
  };
}
