/**
 * The default trainer of fine-tuning Jobs (issue 18 item 5): LLMariner's published fine-tuning image,
 * driven by a command equivalent to the one LLMariner's job-manager dispatcher generates (its cmd.tpl):
 * `accelerate launch ./sft.py` (PEFT LoRA) with the job's hyperparameters and GPU count, then llama.cpp's
 * `convert-lora-to-ggml.py` on the adapter. Inputs are downloaded and the PEFT adapter uploaded by the pod's
 * script around it (jobManifests.ts), all with presigned URLs; this command uploads the GGML adapter
 * itself, with the presigned PUT in the URLs Secret. `MARINER_FINE_TUNING_IMAGE` (with
 * `MARINER_FINE_TUNING_COMMAND`) replaces all of it (agent/README.md).
 */
import type { FineTuningSpec } from '../../lib/jobSpec.js';
import { JobRefusedError } from '../executor.js';

/** LLMariner's fine-tuning image, at a pinned release (public.ecr.aws/cloudnatix/llmariner/fine-tuning). */
export const DEFAULT_FINE_TUNING_IMAGE = 'public.ecr.aws/cloudnatix/llmariner/fine-tuning:0.3.0';
/** What `convert-lora-to-ggml.py` writes beside the PEFT adapter, uploaded by the default trainer. */
export const GGML_ADAPTER_FILE = 'ggml-adapter-model.bin';
/** Hyperparameters a job leaves to the trainer (OpenAI's "auto"): these values. */
export const DEFAULT_HYPERPARAMETERS = { nEpochs: 3, batchSize: 4, learningRateMultiplier: 1 };
/** The learning rate a multiplier of 1 gives (PEFT LoRA's usual rate; OpenAI's multiplier scales it). */
export const BASE_LEARNING_RATE = 2e-4;

/** Where the Secret with the job's URLs is mounted (jobManifests.ts). */
const URLS_DIR = '/mariner/urls';

export interface DefaultTrainer {
  image: string;
  /** The container's argv after the pod's input downloads (jobManifests.ts runs it as "$@"). */
  command: string[];
  /** Files the command uploads itself, besides the PEFT adapter: each gets a presigned PUT `output-<file>`. */
  extraOutputs: string[];
}

/** The default trainer for a job: LLMariner's image and the generated command. */
export function defaultTrainer(spec: Pick<FineTuningSpec, 'method' | 'seed' | 'gpuCount' | 'validationFile'>): DefaultTrainer {
  return {
    image: DEFAULT_FINE_TUNING_IMAGE,
    command: ['/bin/sh', '-c', fineTuningCommand(spec), 'mariner-default-trainer'],
    extraOutputs: [GGML_ADAPTER_FILE],
  };
}

/**
 * The shell script the default trainer runs, byte for byte what the golden files in testdata/ hold. The
 * job's numbers are written into it (validated here); paths come from the pod's MARINER_* environment.
 */
export function fineTuningCommand(spec: Pick<FineTuningSpec, 'method' | 'seed' | 'gpuCount' | 'validationFile'>): string {
  if (spec.method.type !== 'supervised') {
    throw new JobRefusedError(
      `the default trainer (LLMariner's sft.py) runs supervised fine-tuning only, not ${spec.method.type}: set MARINER_FINE_TUNING_IMAGE on the agent to a trainer that does`,
    );
  }
  const h = spec.method.hyperparameters;
  const epochs = positiveInteger(h.nEpochs ?? DEFAULT_HYPERPARAMETERS.nEpochs, 'n_epochs');
  const batchSize = positiveInteger(h.batchSize ?? DEFAULT_HYPERPARAMETERS.batchSize, 'batch_size');
  const multiplier = h.learningRateMultiplier ?? DEFAULT_HYPERPARAMETERS.learningRateMultiplier;
  if (!Number.isFinite(multiplier) || multiplier <= 0) throw new JobRefusedError(`learning_rate_multiplier must be a positive number, not ${multiplier}`);
  const learningRate = Number((BASE_LEARNING_RATE * multiplier).toPrecision(6));
  const seed = Number.isSafeInteger(spec.seed) ? spec.seed : 42;
  const gpus = Number.isSafeInteger(spec.gpuCount) && spec.gpuCount > 0 ? spec.gpuCount : 0;

  const launch = [
    'accelerate launch',
    `--num_processes=${Math.max(gpus, 1)}`,
    '--num_machines=1',
    ...(gpus > 1 ? ['--multi_gpu'] : []),
    ...(gpus === 0 ? ['--cpu'] : []),
    '--mixed_precision=no',
    '--dynamo_backend=no',
    './sft.py',
    '--model="$MARINER_BASE_MODEL_DIR"',
    '--dataset_path="$MARINER_TRAINING_FILE"',
    ...(spec.validationFile ? ['--val_dataset_path="$MARINER_VALIDATION_FILE"'] : []),
    '--output="$MARINER_OUTPUT_DIR"',
    `--num_train_epochs=${epochs}`,
    `--per_device_train_batch_size=${batchSize}`,
    `--learning_rate=${learningRate}`,
    `--seed=${seed}`,
  ];
  return [
    'set -eu',
    `echo "mariner: training a LoRA adapter (${epochs} epochs, batch size ${batchSize}, learning rate ${learningRate}, ${gpus} GPU${gpus === 1 ? '' : 's'})"`,
    launch.join(' \\\n  '),
    'echo "mariner: converting the LoRA adapter to GGML"',
    'python3 ./convert-lora-to-ggml.py "$MARINER_OUTPUT_DIR"',
    `curl -fsSL --retry 3 -X PUT --upload-file "$MARINER_OUTPUT_DIR/${GGML_ADAPTER_FILE}" "$(cat ${URLS_DIR}/output-${GGML_ADAPTER_FILE})"`,
    '',
  ].join('\n');
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new JobRefusedError(`${name} must be a positive integer, not ${value}`);
  return value;
}
