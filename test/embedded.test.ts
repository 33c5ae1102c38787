/**
 * `mariner up` as a user runs it: a real child process of the compiled build (dist/, as `npm start`
 * runs it) on the embedded PGlite, with a fresh data dir, no DATABASE_URL and no
 * MARINER_ADMIN_API_KEY. Everything is observed from outside: the banner on stdout, the GraphQL API
 * over HTTP, the data dir on disk, exit codes and stderr.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI, { toFile } from 'openai';
import { WebSocket } from 'ws';
import { toneWav } from '../agent/runtimes/tinyWhisper.js';
import { buildIfNeeded } from '../scripts/build.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** A fresh PGlite takes several seconds to initialise (more on a loaded CI machine). */
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 5_000;
const TEST_TIMEOUT_MS = 90_000;

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface Mariner {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  /** Settles once the process has exited and its output is fully read. */
  exited: Promise<Exit>;
  exit: Exit | undefined;
  startedAt: number;
}

const running = new Set<Mariner>();
const tempDirs: string[] = [];

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'mariner-embedded-'));
  tempDirs.push(dir);
  return dir;
}

/** The environment a user's shell would give it: none of ours (vitest sets NODE_ENV=test, which changes Apollo's behaviour). */
function userEnv(settings: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('MARINER_') || key.startsWith('VITEST') || key === 'DATABASE_URL' || key === 'NODE_ENV') continue;
    env[key] = value;
  }
  return { ...env, MARINER_LOG_LEVEL: 'warn', ...settings };
}

/** dist/ as `npm start` keeps it: built when a source changed. */
beforeAll(async () => {
  await buildIfNeeded();
}, 60_000);

/** `mariner up` (or another command) as `npm start` runs it, compiled (without npm's start-up cost). */
function launch(settings: Record<string, string>, args: string[] = ['up']): Mariner {
  const child = spawn(process.execPath, ['--enable-source-maps', 'dist/bin/mariner.js', ...args], {
    cwd: ROOT,
    env: userEnv(settings),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const m: Mariner = { child, stdout: '', stderr: '', exit: undefined, startedAt: Date.now(), exited: undefined as never };
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (m.stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (m.stderr += chunk));
  m.exited = new Promise<Exit>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      m.exit = { code, signal };
      running.delete(m);
      resolve(m.exit);
    });
  });
  running.add(m);
  return m;
}

function describeOutput(m: Mariner): string {
  return `\n--- stdout ---\n${m.stdout}\n--- stderr ---\n${m.stderr}`;
}

/** Resolves with the first match of `pattern` on stdout, as soon as it is printed. */
function waitForStdout(m: Mariner, pattern: RegExp, timeoutMs = START_TIMEOUT_MS): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const match = m.stdout.match(pattern);
      if (match) finish(() => resolve(match));
    };
    const onClose = (code: number | null, signal: NodeJS.Signals | null) =>
      finish(() => reject(new Error(`mariner exited (code ${code}, signal ${signal}) before printing ${pattern}${describeOutput(m)}`)));
    const timer = setTimeout(() => finish(() => reject(new Error(`no ${pattern} on stdout within ${timeoutMs} ms${describeOutput(m)}`))), timeoutMs);
    const finish = (settle: () => void) => {
      clearTimeout(timer);
      m.child.stdout!.off('data', check);
      m.child.off('close', onClose);
      settle();
    };
    m.child.stdout!.on('data', check);
    m.child.once('close', onClose);
    check();
  });
}

/** Resolves with the exit status, or rejects when the process is still running after `timeoutMs`. */
async function waitForExit(m: Mariner, timeoutMs: number): Promise<Exit> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`mariner still running ${timeoutMs} ms later${describeOutput(m)}`)), timeoutMs);
  });
  try {
    return await Promise.race([m.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

interface Banner {
  stdout: string;
  url: string;
  graphqlUrl: string;
  /** The admin key, when this start printed one. */
  adminKey: string | undefined;
  /** From spawn to the banner on stdout. */
  ms: number;
}

/** Waits for the whole start-up banner: the URLs and the admin-key paragraph. */
async function banner(m: Mariner): Promise<Banner> {
  const match = await waitForStdout(m, /Admin API key(?: \(shown once[^\n]*\n\s*(sk-[A-Za-z0-9_-]+)\n|: created on first start[^\n]*\n)/);
  const ms = Date.now() - m.startedAt;
  const url = m.stdout.match(/GraphQL:\s+(http:\/\/127\.0\.0\.1:\d+)\/graphql/)?.[1];
  expect(url, `no GraphQL URL in the banner${describeOutput(m)}`).toBeDefined();
  expect(m.stdout).toContain(`OpenAI API: ${url}/v1`);
  return { stdout: m.stdout, url: url!, graphqlUrl: `${url}/graphql`, adminKey: match[1], ms };
}

async function gql(graphqlUrl: string, key: string, query: string, variables?: Record<string, unknown>) {
  const response = await fetch(graphqlUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
  });
  const text = await response.text();
  let body: { data?: Record<string, any> | null; errors?: { message: string }[] };
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`non-JSON response ${response.status}: ${text.slice(0, 200)}`);
  }
  expect(body.errors, `GraphQL errors (HTTP ${response.status}) for ${query}`).toBeUndefined();
  expect(response.status).toBe(200);
  return body.data!;
}

const SELF = `{ self { id } }`;
const CREATE_ORG = `mutation { createOrganization(input: { title: "Embedded Org" }) { id title } }`;
const ORG = `query($id: ID!) { organization(id: $id) { id title } }`;
const ORGS = `{ organizations { items { id title } } }`;
const CLUSTERS = `{ clusters { items { id name isDefault connected tunnels { transport } } } }`;

afterAll(async () => {
  // Whatever failed above: no child outlives the file, no temp dir stays behind.
  await Promise.all(
    [...running].map(async (m) => {
      m.child.kill('SIGKILL');
      await m.exited.catch(() => undefined);
    }),
  );
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

describe('mariner up on embedded PGlite, as a child process', () => {
  const dataDir = tempDir();
  let first: Mariner | undefined;
  let firstBanner: Banner | undefined;
  let adminKey: string | undefined;
  let orgId: string | undefined;
  let second: Mariner | undefined;
  let secondBanner: Banner | undefined;
  let defaultId: string | undefined;

  it('a first start prints the GraphQL URL and an admin key that works', { timeout: TEST_TIMEOUT_MS }, async () => {
    first = launch({ MARINER_DATA_DIR: dataDir, MARINER_PORT: '0' }, ['up', '--demo-model']);
    firstBanner = await banner(first);
    console.log(`first start (fresh PGlite): banner after ${firstBanner.ms} ms; ${first.stdout.match(/Mariner is up \([^)]*\)/)?.[0]}`);
    expect(first.stdout).toContain(`embedded PGlite in ${dataDir}`);
    expect(firstBanner.adminKey).toMatch(/^sk-/);
    adminKey = firstBanner.adminKey!;

    const self = await gql(firstBanner.graphqlUrl, adminKey, SELF);
    expect(self.self).toEqual({ id: 'admin@example.com' });
    const created = await gql(firstBanner.graphqlUrl, adminKey, CREATE_ORG);
    expect(created.createOrganization.title).toBe('Embedded Org');
    orgId = created.createOrganization.id;
  });

  it('the OpenAI SDK works against it: upload, list, retrieve, download, delete files; list models', { timeout: TEST_TIMEOUT_MS }, async () => {
    const client = new OpenAI({ apiKey: adminKey!, baseURL: `${firstBanner!.url}/v1`, maxRetries: 0 });
    const text = `${JSON.stringify({ prompt: 'Hello', completion: 'World' })}\n`;
    const file = await client.files.create({ file: await toFile(Buffer.from(text), 'embedded.jsonl'), purpose: 'fine-tune' });
    expect(file).toMatchObject({ object: 'file', bytes: Buffer.byteLength(text), filename: 'embedded.jsonl' });
    const listed: string[] = [];
    for await (const f of client.files.list()) listed.push(f.id);
    expect(listed).toContain(file.id);
    expect((await client.files.retrieve(file.id)).id).toBe(file.id);
    expect(await (await client.files.content(file.id)).text()).toBe(text);
    expect((await client.files.delete(file.id)).deleted).toBe(true);
    await expect(client.files.retrieve(file.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expect((await client.models.list()).data.map((m) => m.id).sort()).toEqual(['mariner-demo', 'mariner-demo-base', 'mariner-demo-whisper']);
  });

  it(
    'the default cluster is connected through its local agent; a second `mariner agent` process joins as another cluster',
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      defaultId = firstBanner!.stdout.match(/Default cluster: (cluster-[A-Za-z0-9]+) \(local agent connected\)/)?.[1];
      expect(defaultId, describeOutput(first!)).toBeDefined();
      const before = await gql(firstBanner!.graphqlUrl, adminKey!, CLUSTERS);
      expect(before.clusters.items).toEqual([{ id: defaultId, name: 'default', isDefault: true, connected: true, tunnels: [{ transport: 'UPGRADE' }] }]);

      const { registerCluster } = await gql(
        firstBanner!.graphqlUrl,
        adminKey!,
        'mutation { registerCluster(input: { name: "edge" }) { registrationKey cluster { id } } }',
      );
      const agent = launch({ MARINER_REGISTRATION_KEY: registerCluster.registrationKey }, [
        'agent',
        '--control-plane',
        firstBanner!.url,
        '--executor',
        'local',
        '--transport',
        'websocket',
      ]);
      await waitForStdout(agent, /tunnel connected/);
      const after = await gql(firstBanner!.graphqlUrl, adminKey!, CLUSTERS);
      expect(after.clusters.items).toContainEqual({
        id: registerCluster.cluster.id,
        name: 'edge',
        isDefault: false,
        connected: true,
        tunnels: [{ transport: 'WEBSOCKET' }],
      });
      agent.child.kill('SIGINT');
      expect(await waitForExit(agent, STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });

      // A wrong key: the agent says so and exits non-zero.
      const refused = launch({ MARINER_REGISTRATION_KEY: `clusterkey-${'x'.repeat(48)}` }, ['agent', '--control-plane', firstBanner!.url]);
      expect((await waitForExit(refused, START_TIMEOUT_MS)).code).toBe(1);
      expect(refused.stderr).toMatch(/refused the registration key/);
    },
  );

  it('--demo-model: the OpenAI SDK streams a chat completion from the demo model (its first request starts the runtime)', { timeout: 150_000 }, async () => {
    expect(first!.stdout).toContain('Demo model: mariner-demo');
    const client = new OpenAI({ apiKey: adminKey!, baseURL: `${firstBanner!.url}/v1`, maxRetries: 0, timeout: 140_000 });
    const stream = await client.chat.completions.create({ model: 'mariner-demo', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 8, stream: true });
    let content = '';
    for await (const chunk of stream) content += chunk.choices[0]?.delta?.content ?? '';
    expect(content.length).toBeGreaterThan(0);
  });

  it('--demo-model: the OpenAI SDK transcribes audio with the demo Whisper model (its first request starts the runtime)', { timeout: 150_000 }, async () => {
    expect(first!.stdout).toContain('Demo transcription model: mariner-demo-whisper');
    const client = new OpenAI({ apiKey: adminKey!, baseURL: `${firstBanner!.url}/v1`, maxRetries: 0, timeout: 140_000 });
    const file = await toFile(toneWav({ ms: 500 }), 'tone.wav', { type: 'audio/wav' });
    const vtt = await client.audio.transcriptions.create({ file, model: 'mariner-demo-whisper', response_format: 'vtt' });
    expect(vtt).toMatch(/^WEBVTT\n\n/);
  });

  it('--demo-model: a fine-tuning job on the demo base model runs with the demo trainer and its model is listed', { timeout: 120_000 }, async () => {
    expect(first!.stdout).toContain('Demo base model for fine-tuning: mariner-demo-base');
    const client = new OpenAI({ apiKey: adminKey!, baseURL: `${firstBanner!.url}/v1`, maxRetries: 0 });
    const lines = [1, 2, 3].map((i) =>
      JSON.stringify({
        messages: [
          { role: 'user', content: `q${i}` },
          { role: 'assistant', content: `a${i}` },
        ],
      }),
    );
    const file = await client.files.create({ file: await toFile(Buffer.from(lines.join('\n') + '\n'), 'train.jsonl'), purpose: 'fine-tune' });
    const job = await client.fineTuning.jobs.create({ model: 'mariner-demo-base', training_file: file.id, suffix: 'demo', hyperparameters: { n_epochs: 1 } });
    let current = job;
    const deadline = Date.now() + 100_000;
    while (!['succeeded', 'failed', 'cancelled'].includes(current.status) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      current = await client.fineTuning.jobs.retrieve(job.id);
    }
    expect(current, JSON.stringify(current.error)).toMatchObject({
      status: 'succeeded',
      fine_tuned_model: expect.stringMatching(/^ft:mariner-demo-base:demo-/),
    });
    expect((await client.models.list()).data.map((m) => m.id)).toContain(current.fine_tuned_model);
  });

  it('keeps the internal token secret in the data dir with mode 0600', { skip: process.platform === 'win32' }, () => {
    expect(first).toBeDefined();
    const file = path.join(dataDir, 'internal-token-secret');
    expect(existsSync(file)).toBe(true);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('stops cleanly on SIGINT: exit code 0 within a few seconds', { timeout: TEST_TIMEOUT_MS }, async () => {
    expect(first?.exit, 'the first instance should still be running').toBeUndefined();
    const sent = Date.now();
    first!.child.kill('SIGINT');
    const exit = await waitForExit(first!, STOP_TIMEOUT_MS);
    console.log(`SIGINT → exit in ${Date.now() - sent} ms`);
    expect(exit, describeOutput(first!)).toEqual({ code: 0, signal: null });
    expect(first!.stderr).not.toContain('shutdown took too long');
  });

  it('a restart on the same data dir prints no key; the old key and the organization still work', { timeout: TEST_TIMEOUT_MS }, async () => {
    expect(adminKey && orgId, 'needs the first start').toBeTruthy();
    expect(first?.exit, 'the first instance should have exited').toBeDefined();
    second = launch({ MARINER_DATA_DIR: dataDir, MARINER_PORT: '0' });
    secondBanner = await banner(second);
    console.log(`restart (existing PGlite): banner after ${secondBanner.ms} ms; ${second.stdout.match(/Mariner is up \([^)]*\)/)?.[0]}`);
    expect(secondBanner.adminKey).toBeUndefined();
    expect(second.stdout).not.toMatch(/sk-[A-Za-z0-9]/);
    expect(second.stdout).toMatch(/Admin API key: created on first start/);

    const self = await gql(secondBanner.graphqlUrl, adminKey!, SELF);
    expect(self.self).toEqual({ id: 'admin@example.com' });
    const org = await gql(secondBanner.graphqlUrl, adminKey!, ORG, { id: orgId });
    expect(org.organization).toEqual({ id: orgId, title: 'Embedded Org' });
    const orgs = await gql(secondBanner.graphqlUrl, adminKey!, ORGS);
    expect(orgs.organizations.items).toContainEqual({ id: orgId, title: 'Embedded Org' });
    // The default cluster's agent reconnects with the key kept in the data dir.
    expect(second.stdout).toContain(`Default cluster: ${defaultId} (local agent connected)`);
  });

  it('a second instance on a port already in use fails with a clear message', { timeout: TEST_TIMEOUT_MS }, async () => {
    expect(secondBanner && second?.exit === undefined, 'needs the restarted instance running').toBeTruthy();
    const port = new URL(secondBanner!.url).port;
    // Its own data dir: two processes must never share one PGlite directory.
    const clashDir = path.join(tempDir(), 'data');
    const clash = launch({ MARINER_DATA_DIR: clashDir, MARINER_PORT: port });
    const exit = await waitForExit(clash, START_TIMEOUT_MS);
    console.log(`port ${port} in use → exit ${exit.code} in ${Date.now() - clash.startedAt} ms`);
    expect(exit, describeOutput(clash)).toEqual({ code: 1, signal: null });
    expect(existsSync(clashDir), 'the port is checked before the database is created').toBe(false);
    expect(clash.stderr).toContain(`port ${port} is in use`);
    expect(clash.stderr).toContain('MARINER_PORT');
    expect(clash.stderr, 'a message, not a stack trace').not.toMatch(/^\s+at /m);
    expect(clash.stdout).not.toContain('Mariner is up');

    // The instance that holds the port is unharmed, and still stops cleanly.
    const self = await gql(secondBanner!.graphqlUrl, adminKey!, SELF);
    expect(self.self).toEqual({ id: 'admin@example.com' });
    const sent = Date.now();
    second!.child.kill('SIGINT');
    const stopped = await waitForExit(second!, STOP_TIMEOUT_MS);
    console.log(`restart: SIGINT → exit in ${Date.now() - sent} ms`);
    expect(stopped, describeOutput(second!)).toEqual({ code: 0, signal: null });
  });

  it('MARINER_PORT=abc fails fast with exit code 2, naming MARINER_PORT, before touching the data dir', { timeout: TEST_TIMEOUT_MS }, async () => {
    const untouched = path.join(tempDir(), 'data');
    const bad = launch({ MARINER_DATA_DIR: untouched, MARINER_PORT: 'abc' });
    const exit = await waitForExit(bad, 30_000);
    console.log(`MARINER_PORT=abc → exit ${exit.code} in ${Date.now() - bad.startedAt} ms`);
    expect(exit, describeOutput(bad)).toEqual({ code: 2, signal: null });
    expect(bad.stderr).toMatch(/MARINER_PORT must be an integer.*"abc"/);
    expect(bad.stderr).not.toMatch(/^\s+at /m);
    expect(bad.stdout).toBe('');
    expect(existsSync(untouched), 'config is validated before anything is created').toBe(false);
  });
});

/** A fetch for the OpenAI SDK that keeps what came over the wire: the raw server-sent events of a stream. */
function recordingFetch(sink: { text: string }): typeof fetch {
  return async (input, init) => {
    const response = await fetch(input, init);
    if (!response.body) return response;
    const decoder = new TextDecoder();
    const body = response.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          sink.text += decoder.decode(chunk, { stream: true });
          controller.enqueue(chunk);
        },
      }),
    );
    return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
  };
}

/** How a server-sent event stream ended: `[DONE]`, an OpenAI error event, or cut (neither). */
function streamEnding(text: string): { ending: 'done' | 'error' | 'cut'; events: number; last: string } {
  const events = text.split('\n\n').filter((event) => event.trim() !== '');
  const last = events.at(-1) ?? '';
  if (!text.endsWith('\n\n')) return { ending: 'cut', events: events.length, last };
  if (last === 'data: [DONE]') return { ending: 'done', events: events.length, last };
  try {
    const parsed = JSON.parse(last.replace(/^data: /, '')) as { error?: { message?: unknown } };
    if (typeof parsed.error?.message === 'string' && parsed.error.message !== '') return { ending: 'error', events: events.length, last };
  } catch {
    /* not JSON: cut */
  }
  return { ending: 'cut', events: events.length, last };
}

/**
 * `mariner up --demo-model` gets SIGTERM while a streamed chat completion (OpenAI SDK) and a graphql-ws
 * subscription are open; resolves with how the stream ended on the wire and how the process exited.
 */
async function sigtermWithStreamInFlight(settings: Record<string, string>) {
  const m = launch({ MARINER_DATA_DIR: tempDir(), MARINER_PORT: '0', ...settings }, ['up', '--demo-model']);
  const { url, graphqlUrl, adminKey } = await banner(m);
  const wire = { text: '' };
  const client = new OpenAI({ apiKey: adminKey!, baseURL: `${url}/v1`, maxRetries: 0, timeout: 140_000, fetch: recordingFetch(wire) });
  // The first request activates the demo model and waits for its runtime.
  await client.chat.completions.create({ model: 'mariner-demo', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1 });

  const socket = new WebSocket(graphqlUrl.replace('http://', 'ws://'), 'graphql-transport-ws');
  const messages: Record<string, unknown>[] = [];
  socket.on('message', (data) => messages.push(JSON.parse(data.toString()) as Record<string, unknown>));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
  const received = (type: string) =>
    new Promise<void>((resolve) => {
      const check = () => (messages.some((message) => message['type'] === type) ? resolve() : void socket.once('message', check));
      check();
    });
  socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${adminKey}` } }));
  await received('connection_ack');
  socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: 'subscription { runtimesUpdated { readyModelIds } }' } }));
  await received('next');

  // Long enough (thousands of chunks) to be in flight when the signal arrives.
  wire.text = '';
  const stream = await client.chat.completions.create({
    model: 'mariner-demo',
    messages: [{ role: 'user', content: 'Tell me a long story' }],
    max_tokens: 3000,
    stream: true,
  });
  const chunks = stream[Symbol.asyncIterator]();
  expect((await chunks.next()).done).toBe(false);
  const signalled = Date.now();
  m.child.kill('SIGTERM');
  let thrown: unknown;
  try {
    while (!(await chunks.next()).done);
  } catch (error) {
    thrown = error;
  }
  const ending = streamEnding(wire.text);
  console.log(
    `SIGTERM with a stream in flight (${JSON.stringify(settings)}): stream ended (${ending.ending}, ${ending.events} events) after ${Date.now() - signalled} ms`,
  );
  return { m, ending, thrown, subscription: await closed, exit: await waitForExit(m, 40_000) };
}

describe('mariner up: SIGTERM with a streamed completion and a subscription in flight', () => {
  it(
    'the stream completes within the drain (every chunk, then [DONE]); the subscription closes with 1001 and a reason; exit 0',
    { timeout: 180_000 },
    async () => {
      const { m, ending, thrown, subscription, exit } = await sigtermWithStreamInFlight({});
      expect(ending.ending, `${ending.last}${describeOutput(m)}`).toBe('done');
      expect(thrown).toBeUndefined();
      expect(subscription).toEqual({ code: 1001, reason: 'server shutting down' });
      expect(exit, describeOutput(m)).toEqual({ code: 0, signal: null });
    },
  );

  it('past the drain limit (MARINER_DRAIN_TIMEOUT_MS=0) the stream ends with an OpenAI error event, not a cut; exit 0', { timeout: 180_000 }, async () => {
    const { m, ending, thrown, subscription, exit } = await sigtermWithStreamInFlight({ MARINER_DRAIN_TIMEOUT_MS: '0' });
    expect(ending.ending, `${ending.last}${describeOutput(m)}`).toBe('error');
    expect(JSON.parse(ending.last.replace(/^data: /, ''))).toEqual({
      error: { message: 'The server is shutting down; retry the request', type: 'server_error', param: null, code: null },
    });
    // The SDK raises it as an API error (not a connection failure).
    expect(thrown).toBeInstanceOf(OpenAI.APIError);
    expect(thrown).not.toBeInstanceOf(OpenAI.APIConnectionError);
    expect(subscription).toEqual({ code: 1001, reason: 'server shutting down' });
    expect(exit, describeOutput(m)).toEqual({ code: 0, signal: null });
  });
});
