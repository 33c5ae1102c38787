import { badInput } from '../../lib/errors.js';
import { isId } from '../../lib/ids.js';
import type { ModelConfigValue } from './store.js';
import { parseSchedules, type ScalingSchedule } from '../../lib/scalingSchedule.js';

const MODEL_ID = /^[A-Za-z0-9][A-Za-z0-9._:\/-]{0,254}$/;

/** Model ids are stored with `/` replaced by `-` (LLMariner common/pkg/id/id.go); lookups normalise too. */
export function normaliseModelId(id: string, field = 'id'): string {
  const trimmed = id.trim();
  if (!MODEL_ID.test(trimmed) || trimmed.includes('..')) {
    throw badInput(`${field}: "${trimmed.slice(0, 80)}" is not a valid model id (letters, digits, . _ : / -, at most 255)`, field);
  }
  return trimmed.replaceAll('/', '-');
}

/** 18 characters as LLMariner, plus 7 for the `-<6 of the job id>` a fine-tuning job adds to its user's suffix. */
const SUFFIX = /^[a-z0-9][a-z0-9-]{0,24}$/;

export function validSuffix(value: string, field = 'input.suffix'): string {
  if (!SUFFIX.test(value)) throw badInput(`${field} must be 1–25 lowercase letters, digits or dashes`, field);
  return value;
}

export const DEFAULT_MODEL_CONFIG: ModelConfigValue = {
  runtime: { gpu: 0, replicas: 1, extraArgs: [] },
  clusterAllocationPolicy: { allowedClusterIds: [], enableOnDemandAllocation: false },
};

/** A scaling schedule as GraphQL gives it (ModelScalingScheduleInput). */
export interface ScalingScheduleInput {
  cron: string;
  timeZone?: string | null;
  minReplicas: number;
  maxReplicas: number;
  onDemand?: boolean | null;
}

export interface ModelConfigInput {
  runtime?: {
    gpu?: number | null;
    replicas?: number | null;
    extraArgs?: string[] | null;
    scalingSchedules?: ScalingScheduleInput[] | null;
    loadBalancing?: string | null;
    prefixHashChars?: number | null;
  } | null;
  clusterAllocationPolicy?: { allowedClusterIds?: string[] | null; enableOnDemandAllocation?: boolean | null } | null;
}

/** Applies the given parts of a config onto `base`, validating each. */
export function mergeModelConfig(base: ModelConfigValue, input: ModelConfigInput | null | undefined, field = 'input.config'): ModelConfigValue {
  const runtime = { ...base.runtime };
  const policy = { ...base.clusterAllocationPolicy };
  if (input?.runtime?.gpu != null) {
    if (!Number.isInteger(input.runtime.gpu) || input.runtime.gpu < 0 || input.runtime.gpu > 64) {
      throw badInput(`${field}.runtime.gpu must be between 0 and 64`, `${field}.runtime.gpu`);
    }
    runtime.gpu = input.runtime.gpu;
  }
  if (input?.runtime?.replicas != null) {
    if (!Number.isInteger(input.runtime.replicas) || input.runtime.replicas < 0 || input.runtime.replicas > 100) {
      throw badInput(`${field}.runtime.replicas must be between 0 and 100`, `${field}.runtime.replicas`);
    }
    runtime.replicas = input.runtime.replicas;
  }
  if (input?.runtime?.extraArgs != null) {
    if (input.runtime.extraArgs.length > 100 || input.runtime.extraArgs.some((a) => a.length > 1000 || /[\u0000-\u001f]/.test(a))) {
      throw badInput(`${field}.runtime.extraArgs: at most 100 arguments of at most 1000 printable characters`, `${field}.runtime.extraArgs`);
    }
    runtime.extraArgs = [...input.runtime.extraArgs];
  }
  if (input?.runtime?.scalingSchedules != null)
    runtime.scalingSchedules = scalingSchedules(input.runtime.scalingSchedules, `${field}.runtime.scalingSchedules`);
  if (input?.runtime?.loadBalancing != null) {
    if (input.runtime.loadBalancing !== 'LEAST_IN_FLIGHT' && input.runtime.loadBalancing !== 'PREFIX_HASH')
      throw badInput(`${field}.runtime.loadBalancing must be LEAST_IN_FLIGHT or PREFIX_HASH`, `${field}.runtime.loadBalancing`);
    runtime.loadBalancing = input.runtime.loadBalancing;
  }
  if (input?.runtime?.prefixHashChars != null) {
    const chars = input.runtime.prefixHashChars;
    if (!Number.isInteger(chars) || chars < 16 || chars > 100_000)
      throw badInput(`${field}.runtime.prefixHashChars must be between 16 and 100000`, `${field}.runtime.prefixHashChars`);
    runtime.prefixHashChars = chars;
  }
  if (input?.clusterAllocationPolicy?.allowedClusterIds != null) {
    const bad = input.clusterAllocationPolicy.allowedClusterIds.find((id) => !isId('cluster', id));
    if (bad !== undefined)
      throw badInput(
        `${field}.clusterAllocationPolicy.allowedClusterIds: "${bad.slice(0, 80)}" is not a cluster id`,
        `${field}.clusterAllocationPolicy.allowedClusterIds`,
      );
    policy.allowedClusterIds = [...new Set(input.clusterAllocationPolicy.allowedClusterIds)];
  }
  if (input?.clusterAllocationPolicy?.enableOnDemandAllocation != null) {
    policy.enableOnDemandAllocation = input.clusterAllocationPolicy.enableOnDemandAllocation;
  }
  return { runtime, clusterAllocationPolicy: policy };
}

const MAX_LOADER_MESSAGE = 2000;

/** A loader's status message or failure reason: trimmed, printable, at most 2000 characters; null when empty. */
export function loaderMessage(value: string | null | undefined, field = 'input.message'): string | null {
  const message = value?.trim() ?? '';
  if (message === '') return null;
  if (message.length > MAX_LOADER_MESSAGE || /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(message)) {
    throw badInput(`${field}: at most ${MAX_LOADER_MESSAGE} printable characters`, field);
  }
  return message;
}

/**
 * A model's scaling schedules, checked as the agent checks its own (lib/scalingSchedule.ts: a valid cron
 * expression and IANA time zone, 0 ≤ minReplicas ≤ maxReplicas ≤ 1000, at most 32); [] removes them.
 */
function scalingSchedules(input: ScalingScheduleInput[], field: string): ScalingSchedule[] {
  if (input.length === 0) return [];
  const given = input.map((s) => ({
    cron: s.cron,
    minReplicas: s.minReplicas,
    maxReplicas: s.maxReplicas,
    ...(s.timeZone != null ? { timeZone: s.timeZone } : {}),
    ...(s.onDemand != null ? { onDemand: s.onDemand } : {}),
  }));
  try {
    return parseSchedules(given, field);
  } catch (error) {
    throw badInput((error as Error).message, field);
  }
}
