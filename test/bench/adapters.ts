/**
 * LoRA adapters on the base model's runtime (issue 18, "Done when"): the time to first token of an `ft:`
 * request when its adapter must be loaded vs when it is loaded already, and the memory of the base
 * model's runtime process with 0, 1 ... N adapters loaded (`npm run bench:adapters`).
 *
 *   npx tsx test/bench/adapters.ts                          10 adapters, 5 warm requests each
 *   npx tsx test/bench/adapters.ts --adapters 4 --warm 10 --max-tokens 16
 *
 * The server is what a new user runs, `mariner up --demo-model` (node --import tsx bin/mariner.ts up
 * --demo-model), in a child process with a fresh data dir, port 0, embedded PGlite and the demo trainer
 * (MARINER_DEMO_TRAINER_STEP_MS=10). The bench uploads one training file and fine-tunes `mariner-demo-base`
 * `--adapters` times (the jobs run at once), so it has that many `ft:` models, each a random GGUF LoRA of
 * the demo model's shapes. It calls the base model first (the request activates it and its runtime starts:
 * ONE node-llama-cpp process, found among the server's descendants by its `--model-id`), then per adapter
 * in turn: one streamed chat completion that must load it (the agent fetches the adapter's GGUF from the
 * object store, the runtime creates the adapter's context on the shared weights), then `--warm` more on
 * the loaded adapter, and base-model requests alternating with them as the reference. Each request is a
 * raw `fetch` with `stream: true`, temperature 0, a fixed seed; time to first token is from just before the
 * request to the first chunk with content. Checks (any failure aborts): HTTP 200, an SSE stream ending in
 * [DONE] with content; the cold and warm answers of one adapter are identical (the same adapter is applied);
 * the adapters' answers differ from the base's (the adapter is in use); the runtime process is the same
 * one throughout and no other runtime process appears (no process per adapter).
 *
 * Memory: the runtime process's VmRSS and RssAnon (/proc/<pid>/status), the median of 5 samples 100 ms
 * apart taken after the requests of each step (nothing in flight), with 0 adapters, then after each adapter
 * is loaded. Results: bench-results/adapters.json and adapters.md.
 *
 * Caveat: the client and the server share the machine; on a small, shared one the cold figure includes the
 * object-store read and a context allocation whose cost grows with --context-size and --parallel (the
 * runtime's defaults here: 2 sequences of the demo model's 4096 tokens per context).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEMO_BASE_MODEL_ID } from '../../bin/demoModel.js';
import {
  BenchAbort,
  benchEnvironment,
  descendantPids,
  intOption,
  latencyStats,
  markdownTable,
  parseBenchArgs,
  processArgv,
  runBench,
  streamChatCompletion,
  streamProblem,
  textTable,
} from './support.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const RESULTS = path.join(ROOT, 'bench-results');
const START_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 30_000;
const JOB_TIMEOUT_MS = 300_000;
const USAGE = '--adapters N (default 10) --warm N (default 5) --max-tokens N (default 8)';

interface Server {
  child: ChildProcess;
  pid: number;
  url: string;
  adminKey: string;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<void>;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
}

/** The user's environment with the bench's settings (none of ours: no MARINER_*, DATABASE_URL, NODE_ENV). */
function serverEnv(settings: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('MARINER_') || key.startsWith('npm_') || key === 'DATABASE_URL' || key === 'NODE_ENV' || key === 'NODE_OPTIONS') continue;
    env[key] = value;
  }
  return { ...env, ...settings };
}

/** `mariner up --demo-model` in a child process; resolves with its URL and admin key once its banner is out. */
async function startServer(dataDir: string, maxAdapters: number): Promise<Server> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bin/mariner.ts', 'up', '--demo-model'], {
    cwd: ROOT,
    env: serverEnv({
      MARINER_DATA_DIR: dataDir,
      MARINER_PORT: '0',
      MARINER_LOG_LEVEL: 'warn',
      MARINER_DEMO_TRAINER_STEP_MS: '10',
      MARINER_JOB_DISPATCH_INTERVAL_MS: '200',
      // Keep every adapter loaded (the runtime's default cap is 4): memory with all N is what is measured.
      MARINER_LOCAL_MAX_LORA_ADAPTERS: String(maxAdapters),
    }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-64 * 1024)));
  const server: Server = {
    child,
    pid: child.pid ?? -1,
    url: '',
    adminKey: '',
    stdout: () => stdout,
    stderr: () => stderr,
    exit: undefined,
    exited: new Promise((resolve) =>
      child.once('close', (code, signal) => {
        server.exit = { code, signal };
        resolve();
      }),
    ),
  };
  const output = () => `\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`;
  const banner = /Admin API key \(shown once[^\n]*\n\s*(sk-[A-Za-z0-9_-]+)\n/;
  const started = Date.now();
  while (!banner.test(stdout)) {
    if (server.exit) throw new BenchAbort(`mariner exited (code ${server.exit.code}) before its banner${output()}`);
    if (Date.now() - started > START_TIMEOUT_MS) throw new BenchAbort(`no banner within ${START_TIMEOUT_MS} ms${output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const url = /GraphQL:\s+(http:\/\/127\.0\.0\.1:\d+)\/graphql/.exec(stdout)?.[1];
  if (!url) throw new BenchAbort(`no GraphQL URL in the banner${output()}`);
  server.url = url;
  server.adminKey = banner.exec(stdout)![1]!;
  return server;
}

/** SIGINT (Ctrl-C), then SIGKILL if it is still running after STOP_TIMEOUT_MS. */
async function stopServer(server: Server): Promise<void> {
  if (server.exit) return;
  server.child.kill('SIGINT');
  let timer: NodeJS.Timeout | undefined;
  const stopped = await Promise.race([
    server.exited.then(() => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), STOP_TIMEOUT_MS))),
  ]);
  clearTimeout(timer);
  if (!stopped) {
    server.child.kill('SIGKILL');
    await server.exited;
  }
}

/** A JSON call to the OpenAI API; a BenchAbort for anything but 2xx. */
async function api<T>(server: Server, method: string, route: string, body?: unknown): Promise<T> {
  const isForm = body instanceof FormData;
  const response = await fetch(`${server.url}/v1${route}`, {
    method,
    headers: { authorization: `Bearer ${server.adminKey}`, ...(body && !isForm ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: isForm ? body : JSON.stringify(body) } : {}),
  });
  const text = await response.text();
  if (!response.ok) throw new BenchAbort(`${method} /v1${route}: HTTP ${response.status} ${text.slice(0, 500)}`);
  return JSON.parse(text) as T;
}

/** Fine-tunes the demo base model `count` times at once; the `ft:` model ids, in job order. */
async function fineTune(server: Server, count: number): Promise<string[]> {
  const form = new FormData();
  const example = {
    messages: [
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'hello' },
    ],
  };
  form.append('purpose', 'fine-tune');
  form.append('file', new Blob([`${JSON.stringify(example)}\n`], { type: 'application/jsonl' }), 'train.jsonl');
  const file = await api<{ id: string }>(server, 'POST', '/files', form);
  const jobs: string[] = [];
  for (let i = 0; i < count; i++) {
    const job = await api<{ id: string }>(server, 'POST', '/fine_tuning/jobs', {
      model: DEMO_BASE_MODEL_ID,
      training_file: file.id,
      suffix: `bench${i + 1}`,
      hyperparameters: { n_epochs: 1 },
    });
    jobs.push(job.id);
  }
  const models: string[] = [];
  const deadline = Date.now() + JOB_TIMEOUT_MS;
  for (const id of jobs) {
    for (;;) {
      const job = await api<{ status: string; fine_tuned_model: string | null; error: unknown }>(server, 'GET', `/fine_tuning/jobs/${id}`);
      if (job.status === 'succeeded' && job.fine_tuned_model) {
        models.push(job.fine_tuned_model);
        break;
      }
      if (['failed', 'cancelled'].includes(job.status)) throw new BenchAbort(`fine-tuning job ${id} ${job.status}: ${JSON.stringify(job.error)}`);
      if (Date.now() > deadline) throw new BenchAbort(`fine-tuning job ${id} still ${job.status} after ${JOB_TIMEOUT_MS} ms`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  return models;
}

/** The node-llama-cpp runtime processes under the server, with the model id each serves. */
function runtimeProcesses(serverPid: number): { pid: number; modelId: string }[] {
  return descendantPids(serverPid).flatMap((pid) => {
    const argv = processArgv(pid);
    if (!argv.some((arg) => arg.includes('llamaCppServer'))) return [];
    return [{ pid, modelId: argv[argv.indexOf('--model-id') + 1] ?? '' }];
  });
}

/** VmRSS and RssAnon of a process, MiB: the median of `samples` readings 100 ms apart. */
async function memoryMiB(pid: number, samples = 5): Promise<{ rss: number; anon: number }> {
  const rss: number[] = [];
  const anon: number[] = [];
  for (let i = 0; i < samples; i++) {
    if (i > 0) await new Promise((resolve) => setTimeout(resolve, 100));
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    rss.push(Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN) / 1024);
    anon.push(Number(/^RssAnon:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN) / 1024);
  }
  const median = (xs: number[]) => Math.round(xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]! * 10) / 10;
  return { rss: median(rss), anon: median(anon) };
}

async function main(): Promise<void> {
  const args = parseBenchArgs(
    process.argv.slice(2),
    { adapters: { type: 'string', default: '10' }, warm: { type: 'string', default: '5' }, 'max-tokens': { type: 'string', default: '8' } },
    USAGE,
  );
  const adapterCount = intOption('adapters', args.adapters!, 1);
  const warmPerAdapter = intOption('warm', args.warm!, 1);
  const maxTokens = intOption('max-tokens', args['max-tokens']!, 1);
  const command = `npx tsx test/bench/adapters.ts --adapters ${adapterCount} --warm ${warmPerAdapter} --max-tokens ${maxTokens}`;
  const dataDir = mkdtempSync(path.join(tmpdir(), 'mariner-bench-adapters-'));
  const server = await startServer(dataDir, adapterCount);
  try {
    console.log(`mariner up --demo-model at ${server.url}; fine-tuning ${DEMO_BASE_MODEL_ID} ${adapterCount} times`);
    const fineTuneStarted = performance.now();
    const models = await fineTune(server, adapterCount);
    const fineTuneSeconds = Math.round((performance.now() - fineTuneStarted) / 100) / 10;
    console.log(`${models.length} ft: models in ${fineTuneSeconds} s: ${models.join(', ')}`);

    const headers = { authorization: `Bearer ${server.adminKey}`, 'content-type': 'application/json' };
    const ask = async (model: string, timeoutMs: number) => {
      const body = JSON.stringify({
        model,
        messages: [{ role: 'user', content: 'Say something.' }],
        temperature: 0,
        seed: 7,
        max_tokens: maxTokens,
        stream: true,
      });
      const reply = await streamChatCompletion(`${server.url}/v1/chat/completions`, headers, body, AbortSignal.timeout(timeoutMs));
      const problem = streamProblem(reply);
      if (problem) throw new BenchAbort(`${model}: ${problem}`);
      return { ttftNs: reply.contentAtNs[0]!, text: reply.text };
    };

    // The base model first: on-demand activation starts its one runtime process.
    const activationStarted = performance.now();
    const baseAnswer = (await ask(DEMO_BASE_MODEL_ID, START_TIMEOUT_MS)).text;
    const activationMs = Math.round(performance.now() - activationStarted);
    const runtimes = runtimeProcesses(server.pid);
    const runtime = runtimes.find((r) => r.modelId === DEMO_BASE_MODEL_ID);
    if (!runtime || runtimes.length !== 1) throw new BenchAbort(`expected one runtime process of ${DEMO_BASE_MODEL_ID}, found ${JSON.stringify(runtimes)}`);
    const baseTtft: bigint[] = [];
    for (let i = 0; i < warmPerAdapter; i++) baseTtft.push((await ask(DEMO_BASE_MODEL_ID, 60_000)).ttftNs);
    const memory = [{ adaptersLoaded: 0, ...(await memoryMiB(runtime.pid)) }];
    console.log(`base runtime pid ${runtime.pid} (first request ${activationMs} ms, with activation): ${memory[0]!.rss} MiB RSS`);

    const coldTtft: bigint[] = [];
    const warmTtft: bigint[] = [];
    const started = process.hrtime.bigint();
    for (const [index, model] of models.entries()) {
      const cold = await ask(model, 60_000);
      coldTtft.push(cold.ttftNs);
      if (cold.text === baseAnswer) throw new BenchAbort(`${model} answered as its base: its adapter is not applied`);
      for (let i = 0; i < warmPerAdapter; i++) {
        const warm = await ask(model, 60_000);
        if (warm.text !== cold.text)
          throw new BenchAbort(`${model} answered differently once loaded: ${JSON.stringify(cold.text)} then ${JSON.stringify(warm.text)}`);
        warmTtft.push(warm.ttftNs);
        baseTtft.push((await ask(DEMO_BASE_MODEL_ID, 60_000)).ttftNs);
      }
      const now = runtimeProcesses(server.pid);
      if (now.length !== 1 || now[0]!.pid !== runtime.pid) throw new BenchAbort(`the runtime processes changed: ${JSON.stringify(now)} (was ${runtime.pid})`);
      memory.push({ adaptersLoaded: index + 1, ...(await memoryMiB(runtime.pid)) });
      console.log(`adapter ${index + 1}/${models.length}: first token ${(Number(cold.ttftNs) / 1e6).toFixed(1)} ms to load, RSS ${memory.at(-1)!.rss} MiB`);
    }
    const wall = process.hrtime.bigint() - started;

    const stats = { cold: latencyStats(coldTtft, wall), warm: latencyStats(warmTtft, wall), base: latencyStats(baseTtft, wall) };
    const at = (n: number) => memory.find((m) => m.adaptersLoaded === n)!;
    const perAdapterMiB = Math.round(((at(adapterCount).rss - at(1).rss) / Math.max(1, adapterCount - 1)) * 10) / 10;
    const report = {
      ...benchEnvironment('adapters', command),
      loadAverage: loadavg().map((x) => Math.round(x * 100) / 100),
      settings: { adapters: adapterCount, warmPerAdapter, maxTokens, server: 'mariner up --demo-model (node --import tsx), embedded PGlite' },
      fineTuneSeconds,
      baseFirstRequestWithActivationMs: activationMs,
      timeToFirstTokenMs: stats,
      runtimeMemoryMiB: memory,
      perAdapterRssMiB: perAdapterMiB,
    };
    const ms = (s: (typeof stats)['cold']) => [s.count, s.p50, s.p90, s.mean, s.min, s.max].map(String);
    const head = ['ft: request', 'n', 'p50 ms', 'p90 ms', 'mean ms', 'min ms', 'max ms'];
    const rows = [
      ['adapter to load (first request)', ...ms(stats.cold)],
      ['adapter loaded', ...ms(stats.warm)],
      ['base model (reference)', ...ms(stats.base)],
    ];
    const memHead = ['adapters loaded', 'VmRSS MiB', 'RssAnon MiB'];
    const memRows = memory.map((m) => [String(m.adaptersLoaded), String(m.rss), String(m.anon)]);
    console.log(`\nTime to first token (streamed chat completion, max_tokens ${maxTokens})\n${textTable(head, rows, 1)}`);
    console.log(`\nBase runtime process (pid ${runtime.pid}) memory\n${textTable(memHead, memRows, 0)}`);
    console.log(`\n1 adapter: ${at(1).rss} MiB, ${adapterCount} adapters: ${at(adapterCount).rss} MiB (${perAdapterMiB} MiB per further adapter)`);

    mkdirSync(RESULTS, { recursive: true });
    writeFileSync(path.join(RESULTS, 'adapters.json'), `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(
      path.join(RESULTS, 'adapters.md'),
      [
        '# LoRA adapters on the base runtime',
        '',
        `\`${command}\` — ${report.date}, Node ${report.node}, ${report.cpu.model} × ${report.cpu.cores}, load average ${report.loadAverage.join(' ')}`,
        '',
        `Time to first token, streamed chat completion (max_tokens ${maxTokens}, temperature 0), \`mariner up --demo-model\`:`,
        '',
        ...markdownTable(head, rows, 1),
        '',
        `Memory of the base model's one runtime process (pid ${runtime.pid}):`,
        '',
        ...markdownTable(memHead, memRows, 1),
        '',
        `1 adapter: ${at(1).rss} MiB; ${adapterCount} adapters: ${at(adapterCount).rss} MiB (${perAdapterMiB} MiB per further adapter).`,
        '',
      ].join('\n'),
    );
    console.log(`\nwrote bench-results/adapters.json and bench-results/adapters.md`);
  } finally {
    await stopServer(server);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

runBench(main);
