import { execFileSync } from 'node:child_process';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_BASE_MODEL_ID } from '../bin/demoModel.js';
import { demoTrainerCommand } from '../agent/trainers/demoTrainer.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';
import { waitFor } from './support/until.js';

/**
 * Issue 18: the life of LoRA adapters on the base model's runtime (local executor, demo model, OpenAI
 * SDK): an `ft:` model still answers with its adapter after the agent restarts; a runtime keeps at most
 * MARINER_LOCAL_MAX_LORA_ADAPTERS adapters, unloading the least recently used; a fine-tuned model deleted
 * or deactivated is unloaded from the runtime; the runtime's status says which adapters it holds.
 */

const MAX_ADAPTERS = 2;
const ASK = { messages: [{ role: 'user' as const, content: 'Say something.' }], temperature: 0, seed: 7, max_tokens: 12 };

/** This process's llamaCppServer children (the embedded agent's runtimes). */
function runtimeProcesses(): number[] {
  const lines = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' }).split('\n');
  return lines.filter((line) => line.includes('llamaCppServer')).map((line) => Number(line.trim().split(/\s+/)[0]));
}

describe('LoRA adapters across an agent restart, under a cap, and when their model goes (local executor)', () => {
  let t: TestPlatform;
  let sdk: OpenAI;
  let ft: string[];
  const answers = new Map<string, string>();
  const saved = { step: process.env['MARINER_DEMO_TRAINER_STEP_MS'], max: process.env['MARINER_LOCAL_MAX_LORA_ADAPTERS'] };

  const answer = async (model: string) => (await sdk.chat.completions.create({ model, ...ASK })).choices[0]!.message.content!;

  /**
   * A report of the runtimes made after this call: a pass already under way (its report may predate the
   * request just answered) ends first, then a fresh one runs.
   */
  async function reportNow(): Promise<void> {
    await t.platform.agent!.reconcileRuntimes();
    await t.platform.agent!.reconcileRuntimes();
  }

  /** The adapters the base model's runtime holds, as its status tells after the agent's next report. */
  async function loadedAdapters(): Promise<string[]> {
    await reportNow();
    const { inferenceStatus } = await t.gqlOk<{ inferenceStatus: { runtimes: { modelId: string; readyReplicas: number; statusMessage: string }[] } }>(
      '{ inferenceStatus { runtimes { modelId readyReplicas statusMessage } } }',
    );
    const base = inferenceStatus.runtimes.find((r) => r.modelId === DEMO_BASE_MODEL_ID && r.readyReplicas > 0);
    expect(base, 'a ready runtime of the base model').toBeDefined();
    const listed = /; LoRA adapters loaded: (.*)$/.exec(base!.statusMessage)?.[1];
    return listed ? listed.split(', ') : [];
  }

  beforeAll(async () => {
    process.env['MARINER_DEMO_TRAINER_STEP_MS'] = '10';
    // Read by the runtime processes the embedded agent starts (they inherit this environment).
    process.env['MARINER_LOCAL_MAX_LORA_ADAPTERS'] = String(MAX_ADAPTERS);
    t = await startTestPlatform({
      defaultCluster: true,
      demoModel: true,
      config: { jobs: { dispatchIntervalMs: 300, localTrainerCommand: demoTrainerCommand() } },
    });
    sdk = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0, timeout: 60_000 });
    const example = {
      messages: [
        { role: 'user', content: 'hi' },
        { role: 'assistant', content: 'hello' },
      ],
    };
    const file = await sdk.files.create({ file: await toFile(Buffer.from(`${JSON.stringify(example)}\n`), 'train.jsonl'), purpose: 'fine-tune' });
    const created = await Promise.all(
      ['one', 'two', 'three'].map((suffix) =>
        sdk.fineTuning.jobs.create({ model: DEMO_BASE_MODEL_ID, training_file: file.id, suffix, hyperparameters: { n_epochs: 1 } }),
      ),
    );
    ft = [];
    for (const { id } of created) {
      const job = await waitFor(
        () => sdk.fineTuning.jobs.retrieve(id),
        (j) => ['succeeded', 'failed', 'cancelled'].includes(j.status),
        'the fine-tuning job to finish',
      );
      expect(job.error).toBeNull();
      ft.push(job.fine_tuned_model!);
    }
    answers.set(DEMO_BASE_MODEL_ID, await answer(DEMO_BASE_MODEL_ID));
  }, 90_000);
  afterAll(async () => {
    await t?.close();
    for (const [name, value] of [
      ['MARINER_DEMO_TRAINER_STEP_MS', saved.step],
      ['MARINER_LOCAL_MAX_LORA_ADAPTERS', saved.max],
    ] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });

  it('a fine-tuned model answers with its adapter after the agent restarts, on the new base runtime', async () => {
    const before = await answer(ft[0]!);
    expect(before).not.toBe(answers.get(DEMO_BASE_MODEL_ID));
    answers.set(ft[0]!, before);
    expect(await loadedAdapters()).toEqual([ft[0]]);
    const [oldRuntime] = runtimeProcesses();

    await t.restart();

    // The same answer (temperature 0, fixed seed): the adapter is applied again, loaded by the new runtime.
    expect(await answer(ft[0]!)).toBe(before);
    const now = runtimeProcesses();
    expect(now).toHaveLength(1);
    expect(now[0]).not.toBe(oldRuntime);
    expect(await loadedAdapters()).toEqual([ft[0]]);
    // The base model answers as before beside it.
    expect(await answer(DEMO_BASE_MODEL_ID)).toBe(answers.get(DEMO_BASE_MODEL_ID));
  }, 60_000);

  it(`a runtime keeps at most MARINER_LOCAL_MAX_LORA_ADAPTERS (${MAX_ADAPTERS}) adapters: the least recently used is unloaded and loads again when called`, async () => {
    for (const model of [ft[1]!, ft[2]!]) answers.set(model, await answer(model));
    // Three different adapters, each different from the base's answer.
    expect(new Set([...answers.values()]).size).toBe(4);
    // ft[0] was used least recently: unloaded when the third was loaded.
    expect((await loadedAdapters()).sort()).toEqual([ft[1], ft[2]].sort());

    expect(await answer(ft[0]!)).toBe(answers.get(ft[0]!));
    expect((await loadedAdapters()).sort()).toEqual([ft[0], ft[2]].sort());
    // Still the one runtime process: adapters come and go inside it.
    expect(runtimeProcesses()).toHaveLength(1);
  }, 60_000);

  it('a cluster of another organization is not told the adapters of this one (the base model it may run lists none)', async () => {
    const other = await projectWithKey(t, 'ft-lifecycle-outsider', { role: 'OWNER' });
    const { registerCluster } = await t.gqlOk(`mutation { registerCluster(input: { name: "outsider-own" }) { registrationKey } }`, {}, { token: other.key });
    const query = '{ workerActiveModels { id loraAdapters } }';
    const seen = (await t.gqlOk<{ workerActiveModels: { id: string; loraAdapters: string[] }[] }>(query, {}, { token: registerCluster.registrationKey }))
      .workerActiveModels;
    expect(seen.find((m) => m.id === DEMO_BASE_MODEL_ID)).toEqual({ id: DEMO_BASE_MODEL_ID, loraAdapters: [] });
    expect(JSON.stringify(seen)).not.toContain('ft:');
    // A member's key is no worker: the field is refused.
    const refused = await t.gql(query, {}, { token: other.key });
    expect(refused.errors?.[0]?.extensions?.['code']).toBe('FORBIDDEN');
  });

  it('a deactivated or deleted fine-tuned model is unloaded from the runtime; reactivated, it loads again', async () => {
    await t.gqlOk('mutation($id: ID!) { deactivateModel(id: $id) { id } }', { id: ft[2] });
    expect(await loadedAdapters()).toEqual([ft[0]]);
    await expect(answer(ft[2]!)).rejects.toThrow();

    expect(await sdk.models.delete(ft[0]!)).toMatchObject({ id: ft[0], deleted: true });
    expect(await loadedAdapters()).toEqual([]);

    await t.gqlOk('mutation($id: ID!) { activateModel(id: $id) { id } }', { id: ft[2] });
    expect(await answer(ft[2]!)).toBe(answers.get(ft[2]!));
    expect(await loadedAdapters()).toEqual([ft[2]]);
    expect(runtimeProcesses()).toHaveLength(1);
  }, 60_000);
  it("with two replicas of the base, an adapter's requests go to the replica holding it, and adapters spread over the replicas", async () => {
    // ft[2] is loaded on the one replica so far; a second one starts empty.
    await t.gqlOk('mutation($id: ID!) { updateModelConfig(input: { id: $id, config: { runtime: { replicas: 2 } } }) { id } }', { id: DEMO_BASE_MODEL_ID });
    await t.platform.agent!.reconcileRuntimes();
    await waitFor(
      async () => runtimeProcesses(),
      (pids) => pids.length === 2,
      'a second replica of the base',
    );

    // ft[1] is loaded by the replica holding no adapter; ft[2] stays where it is, however often it is called.
    expect(await answer(ft[1]!)).toBe(answers.get(ft[1]!));
    for (let i = 0; i < 3; i++) expect(await answer(ft[2]!)).toBe(answers.get(ft[2]!));
    expect(await answer(ft[1]!)).toBe(answers.get(ft[1]!));

    await reportNow();
    const { inferenceStatus } = await t.gqlOk<{ inferenceStatus: { runtimes: { modelId: string; statusMessage: string }[] } }>(
      '{ inferenceStatus { runtimes { modelId statusMessage } } }',
    );
    const message = inferenceStatus.runtimes.find((r) => r.modelId === DEMO_BASE_MODEL_ID)!.statusMessage;
    // Each replica's adapters: one adapter each, none loaded twice.
    const perReplica = /; LoRA adapters loaded: (.*)$/
      .exec(message)![1]!
      .split('; ')
      .map((part) => /^pid (\d+): (.*)$/.exec(part)!.slice(1));
    expect(perReplica.map(([pid]) => Number(pid)).sort()).toEqual(runtimeProcesses().sort());
    expect(perReplica.map(([, ids]) => ids).sort()).toEqual([ft[1], ft[2]].sort());
  }, 60_000);
});
