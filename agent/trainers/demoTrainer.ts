/**
 * The demo trainer: stands in for a real fine-tuning trainer on the local executor, speaking the
 * same contract (agent/README.md "Trainers"). It reads and checks the training file (OpenAI chat
 * or prompt/completion JSONL), reports a made-up, decreasing loss per step and a checkpoint now and
 * then, and writes a LoRA adapter of random values: a PEFT layout (adapter_config.json +
 * adapter_model.safetensors with no tensors) and, beside it, `adapter_model.gguf`, a valid llama.cpp GGUF
 * LoRA adapter for the demo model's shapes (agent/runtimes/tinyGguf.ts `tinyLoraGguf`), so the
 * fine-tuned model is served on the demo base model's runtime and answers differently from it. It trains nothing: it exists so the platform path around a trainer (dispatch, logs,
 * metrics, output upload, model registration) can be seen working without a GPU, in `mariner up
 * --demo-model` and in the tests.
 *
 * Environment: MARINER_TRAINING_FILE, MARINER_VALIDATION_FILE (may be empty), MARINER_OUTPUT_DIR,
 * MARINER_HYPERPARAMETERS (JSON), MARINER_SEED; `--step-ms N` (or MARINER_DEMO_TRAINER_STEP_MS) sets the
 * time per step (default 100 ms).
 */
import { createReadStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { nodeCommand } from '../../lib/nodeScript.js';
import { tinyLoraGguf } from '../runtimes/tinyGguf.js';

/**
 * The argv that runs this trainer with the current Node (through tsx when it runs from sources). The
 * time per step goes into the command (from MARINER_DEMO_TRAINER_STEP_MS where set when it is built): a
 * job does not inherit the agent's environment (agent/jobEnvironment.ts).
 */
export function demoTrainerCommand(stepMs = process.env['MARINER_DEMO_TRAINER_STEP_MS']): string[] {
  return [...nodeCommand(new URL(import.meta.url)), ...(stepMs ? ['--step-ms', stepMs] : [])];
}

interface Example {
  tokens: number;
}

/** One JSONL example: `{"messages":[{role,content},...]}` or `{"prompt","completion"}`; tokens counted as bytes / 4. */
function example(line: string, number: number, file: string): Example {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new Error(`${file} line ${number} is not JSON`);
  }
  const record = value as { messages?: unknown; prompt?: unknown; completion?: unknown };
  if (Array.isArray(record.messages)) {
    let text = '';
    for (const message of record.messages as { role?: unknown; content?: unknown }[]) {
      if (typeof message?.role !== 'string' || typeof message.content !== 'string')
        throw new Error(`${file} line ${number}: each message needs a role and a content string`);
      text += message.content;
    }
    return { tokens: Math.max(1, Math.ceil(Buffer.byteLength(text) / 4)) };
  }
  if (typeof record.prompt === 'string' && typeof record.completion === 'string')
    return { tokens: Math.max(1, Math.ceil(Buffer.byteLength(record.prompt + record.completion) / 4)) };
  throw new Error(`${file} line ${number}: expected {"messages": [...]} or {"prompt": ..., "completion": ...}`);
}

async function readExamples(file: string): Promise<Example[]> {
  const examples: Example[] = [];
  let number = 0;
  for await (const line of createInterface({ input: createReadStream(file) })) {
    number++;
    if (line.trim() === '') continue;
    examples.push(example(line, number, path.basename(file)));
  }
  if (examples.length === 0) throw new Error(`${path.basename(file)} has no examples`);
  return examples;
}

async function main(): Promise<void> {
  const env = process.env;
  const trainingFile = env['MARINER_TRAINING_FILE'];
  const outputDir = env['MARINER_OUTPUT_DIR'];
  if (!trainingFile || !outputDir) throw new Error('MARINER_TRAINING_FILE and MARINER_OUTPUT_DIR are required');
  const hyper = JSON.parse(env['MARINER_HYPERPARAMETERS'] || '{}') as { nEpochs?: number | null; batchSize?: number | null };
  const stepFlag = process.argv.indexOf('--step-ms');
  const stepMs = Number((stepFlag > 0 ? process.argv[stepFlag + 1] : undefined) ?? env['MARINER_DEMO_TRAINER_STEP_MS'] ?? 100);
  const examples = await readExamples(trainingFile);
  const validation = env['MARINER_VALIDATION_FILE'] ? await readExamples(env['MARINER_VALIDATION_FILE']) : null;
  const epochs = hyper.nEpochs ?? 3;
  const batch = hyper.batchSize ?? 1;
  const totalSteps = Math.ceil(examples.length / batch) * epochs;
  const tokensPerEpoch = examples.reduce((sum, e) => sum + e.tokens, 0);
  console.log(`demo trainer: ${examples.length} examples, ${epochs} epochs, batch size ${batch}, ${totalSteps} steps (this trainer trains nothing)`);
  let seed = Number(env['MARINER_SEED'] ?? 1) || 1;
  const random = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
  for (let step = 1; step <= totalSteps; step++) {
    await new Promise((resolve) => setTimeout(resolve, stepMs));
    const loss = 2.5 * Math.exp(-step / Math.max(2, totalSteps / 3)) + 0.1 * random();
    const metrics: Record<string, unknown> = { type: 'metrics', step, total_steps: totalSteps, train_loss: Number(loss.toFixed(4)) };
    if (validation) metrics['valid_loss'] = Number((loss + 0.05).toFixed(4));
    console.log(JSON.stringify(metrics));
    if (step % Math.max(1, Math.ceil(totalSteps / epochs)) === 0) {
      console.log(JSON.stringify({ type: 'checkpoint', step, metrics: { step, train_loss: metrics['train_loss'] } }));
    }
  }
  await writeFile(
    path.join(outputDir, 'adapter_config.json'),
    JSON.stringify(
      {
        peft_type: 'LORA',
        r: 4,
        lora_alpha: 8,
        base_model_name_or_path: env['MARINER_BASE_MODEL'] ?? null,
        mariner_demo: 'random adapter: no weights were trained (adapter_model.gguf holds random values)',
      },
      null,
      2,
    ),
  );
  // A valid safetensors file with no tensors: 8-byte header length, then the JSON header.
  const header = Buffer.from(JSON.stringify({ __metadata__: { format: 'pt', mariner_demo: 'true' } }));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(header.length));
  await writeFile(path.join(outputDir, 'adapter_model.safetensors'), Buffer.concat([length, header]));
  // What LLMariner's trainer gets from convert-lora-to-ggml.py: the adapter in llama.cpp's format. Random
  // values of the demo model's shapes: an adapter of any other base model fails to load when served.
  await writeFile(path.join(outputDir, 'adapter_model.gguf'), tinyLoraGguf({ seed }));
  console.log(JSON.stringify({ type: 'summary', trained_tokens: tokensPerEpoch * epochs }));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  main().catch((error: Error) => {
    console.error(`demo trainer failed: ${error.message}`);
    process.exit(1);
  });
}
