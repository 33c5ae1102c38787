import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../lib/logging.js';
import { writeTinyGguf } from '../../test/support/tinyGguf.js';
import { until } from '../../test/support/until.js';
import { type LocalRuntime, LocalRuntimeManager } from './localRuntimes.js';

let dir: string;
let modelPath: string;
let longContextModelPath: string;
let manager: LocalRuntimeManager;

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function chat(runtime: LocalRuntime, maxTokens = 4) {
  const client = new OpenAI({ baseURL: `${runtime.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  return client.chat.completions.create({ model: runtime.modelId, messages: [{ role: 'user', content: 'Hello' }], max_tokens: maxTokens });
}

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'mariner-runtimes-'));
  modelPath = path.join(dir, 'tiny.gguf');
  writeTinyGguf(modelPath, { seed: 11 });
  longContextModelPath = path.join(dir, 'long.gguf');
  writeTinyGguf(longContextModelPath, { seed: 11, contextLength: 4096 });
  manager = new LocalRuntimeManager({ logger: silentLogger(), parallel: 2, threads: 1, stopGraceMs: 5000 });
});

afterAll(async () => {
  await manager?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('LocalRuntimeManager', () => {
  it('starts one process for concurrent ensure calls of one model, one per model, and stops them all on close', async () => {
    const own = new LocalRuntimeManager({ logger: silentLogger(), threads: 1 });
    try {
      const [first, second, other] = await Promise.all([own.ensure('model-a', modelPath), own.ensure('model-a', modelPath), own.ensure('model-b', modelPath)]);
      expect(second.pid).toBe(first.pid);
      expect(other.pid).not.toBe(first.pid);
      expect(own.get('model-a')).toBe(first);
      expect(own.list().map((r) => r.modelId).sort()).toEqual(['model-a', 'model-b']);
      expect(await own.ensure('model-a', modelPath)).toBe(first);
      expect(first.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(await first.inFlight()).toBe(0);
      expect((await chat(other)).model).toBe('model-b');
      await own.close();
      expect(own.list()).toEqual([]);
      expect(isAlive(first.pid)).toBe(false);
      expect(isAlive(other.pid)).toBe(false);
      await expect(own.ensure('model-a', modelPath)).rejects.toThrow(/closed/);
    } finally {
      await own.close();
    }
  });

  it('stop() lets a request in flight finish, then ends the process', async () => {
    const runtime = await manager.ensure('draining', longContextModelPath);
    const client = new OpenAI({ baseURL: `${runtime.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    // ~1,500 tokens take a second or two here: SIGTERM arrives while they are generated.
    const stream = await client.chat.completions.create({
      model: 'draining',
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 1500,
      stream: true,
      stream_options: { include_usage: true },
    });
    const iterator = stream[Symbol.asyncIterator]();
    await iterator.next();
    const stopped = manager.stop('draining');
    expect(manager.get('draining')).toBeUndefined();
    let finish: string | null = null;
    let completionTokens = 0;
    for (let step = await iterator.next(); !step.done; step = await iterator.next()) {
      finish = step.value.choices[0]?.finish_reason ?? finish;
      completionTokens = step.value.usage?.completion_tokens ?? completionTokens;
    }
    expect(finish).toBe('length');
    expect(completionTokens).toBe(1500);
    await stopped;
    expect(isAlive(runtime.pid)).toBe(false);
  });

  it('forgets a runtime that dies, and the next ensure starts a new one', async () => {
    const runtime = await manager.ensure('crashy', modelPath);
    process.kill(runtime.pid, 'SIGKILL');
    await until(() => manager.get('crashy') === undefined, 'the killed runtime to be forgotten');
    const again = await manager.ensure('crashy', modelPath);
    expect(again.pid).not.toBe(runtime.pid);
    expect((await chat(again)).choices).toHaveLength(1);
    await manager.stop('crashy');
  });

  it('fails ensure with the runtime’s own error when the file is not a model', async () => {
    const bad = path.join(dir, 'not-a-model.gguf');
    writeFileSync(bad, 'this is not GGUF');
    await expect(manager.ensure('broken', bad)).rejects.toThrow(/exited .* before it was ready/);
    expect(manager.get('broken')).toBeUndefined();
  });
});
