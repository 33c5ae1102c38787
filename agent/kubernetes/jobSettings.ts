import type { SecretKeyRef } from './jobManifests.js';

/** How the Kubernetes executor runs jobs (agent/kubernetesExecutor.ts `jobSettingsFromEnv`). */
export interface KubernetesJobSettings {
  /**
   * The trainer image (MARINER_FINE_TUNING_IMAGE); it needs /bin/sh and curl. Unset: LLMariner's fine-tuning
   * image with the command generated for each job (fineTuningCommand.ts).
   */
  image?: string | undefined;
  /** The trainer's argv inside MARINER_FINE_TUNING_IMAGE (MARINER_FINE_TUNING_COMMAND), run with the MARINER_* environment. */
  command?: string[] | undefined;
  /** The Kueue queue of projects that name none (MARINER_KUEUE_DEFAULT_QUEUE); unset: no queue label. */
  defaultQueue?: string | undefined;
  /** How long presigned URLs stay valid (a job may wait in a queue; S3 allows 7 days at most). */
  urlTtlSeconds?: number;
  /** How often followed Jobs and their pods are read. */
  pollIntervalMs?: number;
  /** The OpenAI API as pods reach it, given to batch jobs as OPENAI_BASE_URL (LLMariner batchjob.go). */
  openaiBaseUrl?: string | undefined;
  /**
   * The Secret (and key) holding the W&B API key, given to trainers of jobs with a `wandb` integration as
   * WANDB_API_KEY (MARINER_WANDB_API_KEY_SECRET, MARINER_WANDB_API_KEY_SECRET_KEY; LLMariner's
   * `wandbApiKeySecret`). It must exist in every namespace fine-tuning jobs run in. Unset: such jobs are refused.
   */
  wandbApiKeySecret?: SecretKeyRef | undefined;
}

/** The settings' defaults, in one place. */
export function jobSettingsWithDefaults(settings: KubernetesJobSettings) {
  return {
    ...settings,
    urlTtlSeconds: settings.urlTtlSeconds ?? 7 * 24 * 3600,
    pollIntervalMs: settings.pollIntervalMs ?? 2_000,
  };
}

export type ResolvedJobSettings = ReturnType<typeof jobSettingsWithDefaults>;
