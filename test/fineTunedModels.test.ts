import { execFileSync } from 'node:child_process';
import OpenAI, { NotFoundError, toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_BASE_MODEL_ID } from '../bin/demoModel.js';
import { demoTrainerCommand } from '../agent/trainers/demoTrainer.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';
import { waitFor } from './support/until.js';

/**
 * Issue 18: a fine-tuned model is a LoRA adapter served on its base model's runtime. On the local
 * executor with the demo model: the demo trainer writes a random GGUF LoRA adapter of the demo model's
 * shapes, the job registers `ft:...` as an adapter, and the OpenAI SDK calls it at once (no activation)
 * through the ONE runtime process of the base model, which loads the adapter on first use.
 */

/** This process's llamaCppServer children (the embedded agent's runtimes). */
function runtimeProcesses(): number[] {
  const lines = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' }).split('\n');
  return lines.filter((line) => line.includes('llamaCppServer')).map((line) => Number(line.trim().split(/\s+/)[0]));
}

const ASK = { messages: [{ role: 'user' as const, content: 'Say something.' }], temperature: 0, seed: 7, max_tokens: 12 };

describe('fine-tuned models as LoRA adapters on the local executor (OpenAI SDK)', () => {
  let t: TestPlatform;
  let sdk: OpenAI;
  let ftModel: string;

  beforeAll(async () => {
    process.env['MARINER_DEMO_TRAINER_STEP_MS'] = '10';
    t = await startTestPlatform({
      defaultCluster: true,
      demoModel: true,
      config: { jobs: { dispatchIntervalMs: 300, localTrainerCommand: demoTrainerCommand() } },
    });
    sdk = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0, timeout: 60_000 });
    const file = await sdk.files.create({
      file: await toFile(
        Buffer.from(
          `${JSON.stringify({
            messages: [
              { role: 'user', content: 'hi' },
              { role: 'assistant', content: 'hello' },
            ],
          })}\n`,
        ),
        'train.jsonl',
      ),
      purpose: 'fine-tune',
    });
    const created = await sdk.fineTuning.jobs.create({ model: DEMO_BASE_MODEL_ID, training_file: file.id, suffix: 'lora', hyperparameters: { n_epochs: 1 } });
    const job = await waitFor(
      () => sdk.fineTuning.jobs.retrieve(created.id),
      (j) => ['succeeded', 'failed', 'cancelled'].includes(j.status),
      'the fine-tuning job to finish',
    );
    expect(job.error).toBeNull();
    ftModel = job.fine_tuned_model!;
  }, 60_000);
  afterAll(async () => {
    await t?.close();
  });

  it('the fine-tuned model is a LoRA adapter of its base, in GraphQL and GET /v1/models, servable at once', async () => {
    const { model } = await t.gqlOk(
      `query($id: ID!) { model(id: $id) { id isBaseModel baseModelId formats activationStatus adapter { kind baseModelId formats } } }`,
      {
        id: ftModel,
      },
    );
    expect(model).toEqual({
      id: ftModel,
      isBaseModel: false,
      baseModelId: DEMO_BASE_MODEL_ID,
      formats: ['GGUF_ADAPTER', 'PEFT_SAFETENSORS'],
      activationStatus: 'ACTIVE',
      adapter: { kind: 'LORA', baseModelId: DEMO_BASE_MODEL_ID, formats: ['GGUF_ADAPTER', 'PEFT_SAFETENSORS'] },
    });
    const listed = (await sdk.models.retrieve(ftModel)) as unknown as Record<string, unknown>;
    expect(listed['adapter']).toEqual({ kind: 'LORA', base_model_id: DEMO_BASE_MODEL_ID, formats: ['GGUF_ADAPTER', 'PEFT_SAFETENSORS'] });
    const base = (await sdk.models.retrieve(DEMO_BASE_MODEL_ID)) as unknown as Record<string, unknown>;
    expect(base['adapter']).toBeNull();
  });

  it('answers streamed and not, differently from its base, through one base runtime process that holds the adapter', async () => {
    // The base model first: the request activates it (on-demand) and its runtime starts.
    const baseAnswer = (await sdk.chat.completions.create({ model: DEMO_BASE_MODEL_ID, ...ASK })).choices[0]!.message.content!;
    expect(runtimeProcesses()).toHaveLength(1);

    // The adapter's first request: the agent fetches the adapter file, the runtime loads it.
    const timeToFirstToken = async () => {
      const started = performance.now();
      let first = 0;
      let text = '';
      const stream = await sdk.chat.completions.create({ model: ftModel, ...ASK, stream: true });
      for await (const chunk of stream) {
        expect(chunk.model).toBe(ftModel);
        const piece = chunk.choices[0]?.delta.content ?? '';
        if (piece && !first) first = performance.now() - started;
        text += piece;
      }
      return { first, text };
    };
    const cold = await timeToFirstToken();
    const warm = await timeToFirstToken();
    console.log(`ft: time to first token: adapter to load ${cold.first.toFixed(0)} ms, adapter loaded ${warm.first.toFixed(0)} ms`);
    const whole = await sdk.chat.completions.create({ model: ftModel, ...ASK });
    expect(whole.model).toBe(ftModel);
    const ftAnswer = whole.choices[0]!.message.content!;
    expect(ftAnswer.length).toBeGreaterThan(0);
    // Deterministic (temperature 0, fixed seed), the same streamed or not, and not the base's answer:
    // the adapter is applied.
    expect(cold.text).toBe(ftAnswer);
    expect(warm.text).toBe(ftAnswer);
    expect(ftAnswer).not.toBe(baseAnswer);
    // The base model still answers as before beside it (its own context, unchanged weights).
    expect((await sdk.chat.completions.create({ model: DEMO_BASE_MODEL_ID, ...ASK })).choices[0]!.message.content).toBe(baseAnswer);

    // Tokenizing with the ft: model is its base's tokenizer, on the same runtime.
    const tokenize = async (model: string) =>
      (await (
        await fetch(`${t.url}/v1/tokenize`, {
          method: 'POST',
          headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model, prompt: 'Once upon a time' }),
        })
      ).json()) as { count: number; tokens: number[] };
    const ftTokens = await tokenize(ftModel);
    expect(ftTokens.count).toBeGreaterThan(1);
    expect(ftTokens).toEqual(await tokenize(DEMO_BASE_MODEL_ID));

    // One process: the base model's; status shows the adapter it holds; no runtime of the ft: model.
    expect(runtimeProcesses()).toHaveLength(1);
    const status = await waitFor(
      () =>
        t.gqlOk<{ inferenceStatus: { runtimes: { modelId: string; readyReplicas: number; statusMessage: string }[] } }>(
          '{ inferenceStatus { runtimes { modelId readyReplicas statusMessage } } }',
        ),
      (s) => s.inferenceStatus.runtimes.some((r) => r.statusMessage.includes(ftModel)),
      'the status to show the loaded adapter',
    );
    const runtimes = status.inferenceStatus.runtimes.filter((r) => r.readyReplicas > 0);
    expect(runtimes.map((r) => r.modelId)).toEqual([DEMO_BASE_MODEL_ID]);
    expect(runtimes[0]!.statusMessage).toMatch(new RegExp(`^running \\(pid ${runtimeProcesses()[0]}\\); LoRA adapters loaded: ${ftModel}$`));
  });

  it('another organization cannot call the fine-tuned model (404, as a model that does not exist)', async () => {
    const other = await projectWithKey(t, 'ft-outsider');
    const outsider = new OpenAI({ apiKey: other.key, baseURL: `${t.url}/v1`, maxRetries: 0 });
    await expect(outsider.chat.completions.create({ model: ftModel, ...ASK })).rejects.toBeInstanceOf(NotFoundError);
    await expect(outsider.chat.completions.create({ model: ftModel, ...ASK, stream: true })).rejects.toBeInstanceOf(NotFoundError);
    await expect(outsider.models.retrieve(ftModel)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('a base model with a LoRA adapter cannot be deleted (the reason is given); nor does the adapter get a runtime of its own', async () => {
    await t.gqlOk(`mutation { deactivateModel(id: "${DEMO_BASE_MODEL_ID}") { id } }`);
    const refused = await t.gql(`mutation { deleteModel(id: "${DEMO_BASE_MODEL_ID}") { deleted } }`);
    expect(refused.errors?.[0]?.extensions?.['code']).toBe('FAILED_PRECONDITION');
    expect(refused.errors?.[0]?.message).toBe(
      `model ${DEMO_BASE_MODEL_ID} is the base model of 1 fine-tuned LoRA adapter that run on its weights: delete them before deleting it`,
    );
    // Over REST too: the OpenAI error shape, nothing deleted.
    const rest = await fetch(`${t.url}/v1/models/${DEMO_BASE_MODEL_ID}`, { method: 'DELETE', headers: { authorization: `Bearer ${t.adminKey}` } });
    expect(rest.status).toBe(400); // FAILED_PRECONDITION, as every refused precondition over REST (lib/errors.ts)
    expect(((await rest.json()) as { error: { message: string } }).error.message).toContain('fine-tuned LoRA adapter');
    expect((await sdk.models.retrieve(DEMO_BASE_MODEL_ID)).id).toBe(DEMO_BASE_MODEL_ID);
    // The base is inactive now and the adapter follows it: its runtime is gone, the adapter has none.
    await waitFor(
      async () => runtimeProcesses(),
      (pids) => pids.length === 0,
      'the base runtime to stop',
    );

    // The adapter is deleted as at OpenAI (no runtime of its own to stop, active or not); then the base can go.
    expect(await sdk.models.delete(ftModel)).toMatchObject({ id: ftModel, deleted: true });
    await expect(sdk.models.retrieve(ftModel)).rejects.toBeInstanceOf(NotFoundError);
    expect((await t.gqlOk(`mutation { deleteModel(id: "${DEMO_BASE_MODEL_ID}") { deleted } }`)).deleteModel.deleted).toBe(true);
  });
});
