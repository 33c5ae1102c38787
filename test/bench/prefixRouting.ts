/**
 * Prefix-aware routing (issue 22, item 3, "Done when"): the time to first token of streamed chat
 * completions on 3 local replicas of the demo model, with the model's `loadBalancing` LEAST_IN_FLIGHT
 * and then PREFIX_HASH, in one run (`npm run bench:prefix`).
 *
 *   npx tsx test/bench/prefixRouting.ts                     8 prefixes × 12 suffixes, 6 at a time
 *   npx tsx test/bench/prefixRouting.ts --prefixes 8 --suffixes 20 --concurrency 6 --prefix-chars 2000
 *
 * The server is `mariner up --demo-model` in a child process (fresh data dir, port 0). The bench sets the
 * demo model's runtime config with updateModelConfig (replicas 3, prefixHashChars 512 — shorter than the
 * shared prefixes, so a prefix's requests share a key), waits for 3 ready replicas (3 node-llama-cpp
 * processes, each with its own KV cache), then per mode: sets `loadBalancing`, waits for the agent's next
 * reconciliation (it reads the model's config every 15 s), and sends the same workload: `--prefixes`
 * long system prompts (random words, `--prefix-chars` each) × `--suffixes` short user questions, in one
 * seeded shuffled order, `--concurrency` at a time, each a raw `fetch` with `stream: true`,
 * max_tokens 4, temperature 0. Time to first token: from just before the request to the first chunk with
 * content. Any non-200 or broken stream aborts. Results: bench-results/prefixRouting.json and .md.
 *
 * Caveats: the client and the server share the machine; the second mode starts with the replicas'
 * caches as the first left them (the mixed placement of LEAST_IN_FLIGHT); each replica has 2 sequences
 * (the runtime's --parallel), so 8 prefixes over 3 replicas still evict one another now and then.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEMO_MODEL_ID } from '../../bin/demoModel.js';
import {
  BenchAbort,
  benchEnvironment,
  intOption,
  latencyStats,
  markdownTable,
  parseBenchArgs,
  runBench,
  streamChatCompletion,
  streamProblem,
  textTable,
} from './support.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const RESULTS = path.join(ROOT, 'bench-results');
const USAGE = '--prefixes N (8) --suffixes N (12) --concurrency N (6) --prefix-chars N (1500) --replicas N (3)';
const MODES = ['LEAST_IN_FLIGHT', 'PREFIX_HASH'] as const;

interface Server {
  child: ChildProcess;
  url: string;
  adminKey: string;
  exited: Promise<void>;
  done: boolean;
}

async function startServer(dataDir: string): Promise<Server> {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env))
    if (!key.startsWith('MARINER_') && !key.startsWith('npm_') && key !== 'DATABASE_URL' && key !== 'NODE_ENV' && key !== 'NODE_OPTIONS') env[key] = value;
  const child = spawn(process.execPath, ['--import', 'tsx', 'bin/mariner.ts', 'up', '--demo-model'], {
    cwd: ROOT,
    env: { ...env, MARINER_DATA_DIR: dataDir, MARINER_PORT: '0', MARINER_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-16 * 1024)));
  const server: Server = { child, url: '', adminKey: '', done: false, exited: new Promise((resolve) => child.once('close', () => resolve())) };
  void server.exited.then(() => (server.done = true));
  const banner = /Admin API key \(shown once[^\n]*\n\s*(sk-[A-Za-z0-9_-]+)\n/;
  const started = Date.now();
  while (!banner.test(stdout)) {
    if (server.done || Date.now() - started > 120_000) throw new BenchAbort(`mariner did not start\n${stdout}\n${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  server.url = /GraphQL:\s+(http:\/\/127\.0\.0\.1:\d+)\/graphql/.exec(stdout)![1]!;
  server.adminKey = banner.exec(stdout)![1]!;
  return server;
}

async function graphql<T>(server: Server, query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const response = await fetch(`${server.url}/graphql`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.adminKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as { data?: T; errors?: { message: string }[] };
  if (body.errors?.length || !body.data) throw new BenchAbort(`GraphQL: ${JSON.stringify(body.errors ?? body)}`);
  return body.data;
}

const setRuntime = (server: Server, runtime: Record<string, unknown>) =>
  graphql(server, 'mutation($input: UpdateModelConfigInput!) { updateModelConfig(input: $input) { id } }', {
    input: { id: DEMO_MODEL_ID, config: { runtime } },
  });

/** A deterministic pseudo-random sequence (mulberry32), so both modes get the same workload. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

runBench(async () => {
  const args = parseBenchArgs(
    process.argv.slice(2),
    {
      prefixes: { type: 'string', default: '8' },
      suffixes: { type: 'string', default: '12' },
      concurrency: { type: 'string', default: '6' },
      'prefix-chars': { type: 'string', default: '1500' },
      replicas: { type: 'string', default: '3' },
    },
    USAGE,
  );
  const prefixes = intOption('prefixes', args.prefixes, 1);
  const suffixes = intOption('suffixes', args.suffixes, 1);
  const concurrency = intOption('concurrency', args.concurrency, 1);
  const prefixChars = intOption('prefix-chars', args['prefix-chars'], 600);
  const replicas = intOption('replicas', args.replicas, 2);
  const rand = random(22);
  const words = ['river', 'cache', 'token', 'harbor', 'signal', 'lantern', 'orbit', 'meadow', 'copper', 'glacier', 'violet', 'engine'];
  const systemPrompts = Array.from({ length: prefixes }, (_, p) => {
    let text = `Context ${p}:`;
    while (text.length < prefixChars) text += ` ${words[Math.floor(rand() * words.length)]}`;
    return text.slice(0, prefixChars);
  });
  const workload = systemPrompts.flatMap((system, p) =>
    Array.from({ length: suffixes }, (_, s) => ({ prefix: p, system, question: `Question ${s} about context ${p}: what comes next?` })),
  );
  for (let i = workload.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [workload[i], workload[j]] = [workload[j]!, workload[i]!];
  }

  const dataDir = mkdtempSync(path.join(tmpdir(), 'mariner-bench-prefix-'));
  const server = await startServer(dataDir);
  try {
    const headers = { authorization: `Bearer ${server.adminKey}`, 'content-type': 'application/json' };
    const request = (item: (typeof workload)[number]) =>
      JSON.stringify({
        model: DEMO_MODEL_ID,
        stream: true,
        max_tokens: 4,
        temperature: 0,
        messages: [
          { role: 'system', content: item.system },
          { role: 'user', content: item.question },
        ],
      });
    await setRuntime(server, { replicas, loadBalancing: 'LEAST_IN_FLIGHT', prefixHashChars: 512 });
    // The first request activates the model's runtime; then wait for every replica.
    const started = Date.now();
    for (;;) {
      const reply = await streamChatCompletion(`${server.url}/v1/chat/completions`, headers, request(workload[0]!), AbortSignal.timeout(120_000));
      const problem = streamProblem(reply);
      if (problem) throw new BenchAbort(`warm-up: ${problem}`);
      const { inferenceStatus } = await graphql<{ inferenceStatus: { runtimes: { modelId: string; readyReplicas: number }[] } }>(
        server,
        '{ inferenceStatus { runtimes { modelId readyReplicas } } }',
      );
      if ((inferenceStatus.runtimes.find((r) => r.modelId === DEMO_MODEL_ID)?.readyReplicas ?? 0) >= replicas) break;
      if (Date.now() - started > 180_000) throw new BenchAbort(`${replicas} replicas not ready within 180 s`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }

    const results: Record<string, ReturnType<typeof latencyStats>> = {};
    for (const mode of MODES) {
      await setRuntime(server, { loadBalancing: mode });
      // The agent reads the model's config at its next reconciliation (every 15 s).
      await new Promise((resolve) => setTimeout(resolve, 17_000));
      const ttft: bigint[] = [];
      let next = 0;
      const wallStart = process.hrtime.bigint();
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < workload.length) {
            const item = workload[next++]!;
            const reply = await streamChatCompletion(`${server.url}/v1/chat/completions`, headers, request(item), AbortSignal.timeout(120_000));
            const problem = streamProblem(reply);
            if (problem) throw new BenchAbort(`${mode}: ${problem}`);
            ttft.push(reply.contentAtNs[0]!);
          }
        }),
      );
      results[mode] = latencyStats(ttft, process.hrtime.bigint() - wallStart);
      console.error(`${mode}: p50 ${results[mode].p50} ms, p99 ${results[mode].p99} ms`);
    }

    const command = `npx tsx test/bench/prefixRouting.ts ${process.argv.slice(2).join(' ')}`.trim();
    const report = { ...benchEnvironment('prefixRouting', command), prefixes, suffixes, concurrency, prefixChars, replicas, ttftMs: results };
    const head = ['loadBalancing', 'requests', 'TTFT p50 ms', 'p90 ms', 'p99 ms', 'mean ms', 'req/s'];
    const rows = MODES.map((mode) => {
      const s = results[mode]!;
      return [mode, String(s.count), s.p50.toFixed(1), s.p90.toFixed(1), s.p99.toFixed(1), s.mean.toFixed(1), s.requestsPerSecond.toFixed(1)];
    });
    mkdirSync(RESULTS, { recursive: true });
    writeFileSync(path.join(RESULTS, 'prefixRouting.json'), `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(
      path.join(RESULTS, 'prefixRouting.md'),
      [
        `# Prefix-aware routing: time to first token, ${replicas} local replicas of ${DEMO_MODEL_ID}`,
        '',
        `\`${command}\` — ${prefixes} prefixes of ${prefixChars} characters × ${suffixes} suffixes, ${concurrency} at a time; ${report.date}, ${report.cpu.cores} × ${report.cpu.model}`,
        '',
        ...markdownTable(head, rows, 1),
        '',
      ].join('\n'),
    );
    console.log(textTable(head, rows, 1));
  } finally {
    server.child.kill('SIGINT');
    const timer = setTimeout(() => server.child.kill('SIGKILL'), 30_000);
    await server.exited;
    clearTimeout(timer);
    rmSync(dataDir, { recursive: true, force: true });
  }
});
