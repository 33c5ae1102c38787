import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { Socket } from 'node:net';
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
      expect(
        own
          .list()
          .map((r) => r.modelId)
          .sort(),
      ).toEqual(['model-a', 'model-b']);
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
    const runtime = await manager.ensure('draining', modelPath);
    // In flight: the runtime has taken the request (it answered its headers with 100 Continue); the body
    // is sent only once the runtime drains, so the whole answer is generated while it does. (A stream of
    // 1,500 tokens started before stop() made the test depend on the machine's load: on a busy machine it
    // outlasted the grace period, and the SIGKILL cut it: `other side closed`.)
    const body = JSON.stringify({
      model: 'draining',
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 64,
      stream: true,
      stream_options: { include_usage: true },
    });
    const request = http.request(`${runtime.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), expect: '100-continue' },
    });
    const responded = once(request, 'response') as Promise<[http.IncomingMessage]>;
    await once(request, 'continue');

    // The runtime closes idle kept-alive connections when SIGTERM starts the drain: this one's close
    // is the event that says it has started.
    const agent = new http.Agent({ keepAlive: true });
    const health = http.get(`${runtime.url}/health`, { agent });
    const [idle] = (await once(health, 'socket')) as [Socket];
    const [healthy] = (await once(health, 'response')) as [http.IncomingMessage];
    await once(healthy.resume(), 'end');
    const draining = once(idle, 'close');

    const stopped = manager.stop('draining');
    expect(manager.get('draining')).toBeUndefined();
    await draining;
    request.end(body);
    const [response] = await responded;
    expect(response.statusCode).toBe(200);
    let text = '';
    for await (const chunk of response.setEncoding('utf8')) text += chunk;
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    const chunks = text
      .split('\n\n')
      .filter((event) => event.startsWith('data: {'))
      .map((event) => JSON.parse(event.slice('data: '.length)) as { choices: { finish_reason: string | null }[]; usage?: { completion_tokens: number } });
    expect(chunks.map((chunk) => chunk.choices[0]?.finish_reason).filter(Boolean)).toEqual(['length']);
    expect(chunks.at(-1)?.usage?.completion_tokens).toBe(64);
    await stopped;
    expect(isAlive(runtime.pid)).toBe(false);
    agent.destroy();
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
