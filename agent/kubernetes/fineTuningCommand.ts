/**
 * The default trainer of fine-tuning Jobs (issue 18 item 5): LLMariner's published fine-tuning image,
 * driven by a command equivalent to the one LLMariner's job-manager dispatcher generates (its
 * dispatcher/internal/dispatcher/cmd.tpl and testdata/command.*.golden, read at llmariner/job-manager
 * commits 0fa91b7, 9bf917e and d659670): `accelerate launch` with one process per GPU, the image's
 * `./sft.py` (PEFT LoRA) with `--model`, `--dataset` (a directory whose splits are `train.json` and
 * `test.json`), `--output`, `--per_device_train_batch_size`, `--learning_rate` and `--num_train_epochs`,
 * then `python ./convert-lora-to-ggml.py` on the output. Differences on purpose: inputs are downloaded and
 * the PEFT adapter uploaded by the pod's script around it (jobManifests.ts), and this command PUTs the GGML
 * adapter itself, all with presigned URLs (LLMariner's pod POSTs every output file to one presigned POST);
 * the learning rate is sft.py's default 2e-4 times the job's multiplier (LLMariner passes the multiplier
 * itself as `--learning_rate`). `MARINER_FINE_TUNING_IMAGE` (with `MARINER_FINE_TUNING_COMMAND`) replaces
 * all of it (agent/README.md).
 */
import type { FineTuningSpec } from '../../lib/jobSpec.js';
import { JobRefusedError } from '../executor.js';

/**
 * LLMariner's fine-tuning image at the tag its job-manager-dispatcher chart pins (`job.image` and
 * `job.version` in llmariner/job-manager deployments/dispatcher/values.yaml, commit 01c0d13).
 */
export const DEFAULT_FINE_TUNING_IMAGE = 'public.ecr.aws/cloudnatix/llmariner/fine-tuning:1.26.0';
/** What `convert-lora-to-ggml.py` writes beside the PEFT adapter, uploaded by the default trainer. */
export const GGML_ADAPTER_FILE = 'ggml-adapter-model.bin';
/** Hyperparameters a job leaves to the trainer (OpenAI's "auto"): these values. */
export const DEFAULT_HYPERPARAMETERS = { nEpochs: 3, batchSize: 4, learningRateMultiplier: 1 };
/** The learning rate a multiplier of 1 gives (sft.py's own default; OpenAI's multiplier scales it). */
export const BASE_LEARNING_RATE = 2e-4;

/** Where the Secret with the job's URLs is mounted (jobManifests.ts). */
const URLS_DIR = '/mariner/urls';

/** What of a job the generated command depends on. */
export type TrainerSpec = Pick<FineTuningSpec, 'method' | 'gpuCount' | 'validationFile' | 'integrations'>;

export interface DefaultTrainer {
  image: string;
  /** The container's argv after the pod's input downloads (jobManifests.ts runs it as "$@"). */
  command: string[];
  /** Files the command uploads itself, besides the PEFT adapter: each gets a presigned PUT `output-<file>`. */
  extraOutputs: string[];
}

/** The default trainer for a job: LLMariner's image and the generated command. */
export function defaultTrainer(spec: TrainerSpec): DefaultTrainer {
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
export function fineTuningCommand(spec: TrainerSpec): string {
  if (spec.method.type !== 'supervised') {
    throw new JobRefusedError(
      `the default trainer (LLMariner's sft.py) runs supervised fine-tuning only, not ${spec.method.type}: set MARINER_FINE_TUNING_IMAGE on the agent to a trainer that does`,
    );
  }
  const gpus = Number.isSafeInteger(spec.gpuCount) && spec.gpuCount > 0 ? spec.gpuCount : 0;
  if (gpus === 0) {
    throw new JobRefusedError(
      "the default trainer (LLMariner's sft.py) trains in bf16 with TF32 and needs a GPU: give the job gpu_count >= 1, or set MARINER_FINE_TUNING_IMAGE on the agent to a trainer that runs on CPUs",
    );
  }
  const h = spec.method.hyperparameters;
  const epochs = positiveInteger(h.nEpochs ?? DEFAULT_HYPERPARAMETERS.nEpochs, 'n_epochs');
  const batchSize = positiveInteger(h.batchSize ?? DEFAULT_HYPERPARAMETERS.batchSize, 'batch_size');
  const multiplier = h.learningRateMultiplier ?? DEFAULT_HYPERPARAMETERS.learningRateMultiplier;
  if (!Number.isFinite(multiplier) || multiplier <= 0) throw new JobRefusedError(`learning_rate_multiplier must be a positive number, not ${multiplier}`);
  const learningRate = Number((BASE_LEARNING_RATE * multiplier).toPrecision(6));
  const wandb = (spec.integrations ?? []).some((i) => i.type === 'wandb');

  const launch = [
    'accelerate launch',
    '--mixed_precision=no',
    `--num_processes=${gpus}`,
    '--num_machines=1',
    '--num_cpu_threads_per_process=1',
    '--dynamo_backend=no',
    '"$trainer"',
    '--model="$MARINER_BASE_MODEL_DIR"',
    '--dataset="$dataset"',
    '--output="$MARINER_OUTPUT_DIR"',
    `--per_device_train_batch_size=${batchSize}`,
    `--learning_rate=${learningRate}`,
    `--num_train_epochs=${epochs}`,
    // sft.py reports to W&B only when told; the pod's WANDB_* environment (jobManifests.ts) names the project.
    ...(wandb ? ['--report_to=wandb', '--wandb_project="$WANDB_PROJECT"'] : []),
  ];
  return [
    'set -eu',
    `echo "mariner: training a LoRA adapter (${epochs} epochs, batch size ${batchSize}, learning rate ${learningRate}, ${gpus} GPU${gpus === 1 ? '' : 's'})"`,
    '# sft.py loads a dataset directory: its splits are the files named train.json and test.json.',
    'dataset="$(dirname "$MARINER_TRAINING_FILE")/dataset"',
    'mkdir -p "$dataset"',
    'ln -f "$MARINER_TRAINING_FILE" "$dataset/train.json"',
    ...(spec.validationFile ? ['ln -f "$MARINER_VALIDATION_FILE" "$dataset/test.json"'] : []),
    "# LLMariner's later images name the script train.py (same flags, --method defaults to supervised).",
    'trainer=./sft.py',
    '[ -f "$trainer" ] || trainer=./train.py',
    launch.join(' \\\n  '),
    'echo "mariner: converting the LoRA adapter to GGML"',
    'python ./convert-lora-to-ggml.py "$MARINER_OUTPUT_DIR"',
    `curl -fsSL --retry 3 -X PUT --upload-file "$MARINER_OUTPUT_DIR/${GGML_ADAPTER_FILE}" "$(cat ${URLS_DIR}/output-${GGML_ADAPTER_FILE})"`,
    '',
  ].join('\n');
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new JobRefusedError(`${name} must be a positive integer, not ${value}`);
  return value;
}
