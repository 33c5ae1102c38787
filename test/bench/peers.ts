/**
 * Peer benchmark (`npm run bench:peers`, options after `--`): what a gateway in front of an
 * OpenAI-compatible model runtime costs, for Mariner and for a peer, Portkey's open-source AI gateway,
 * against the runtime called directly (issue 15), and against the floor any Node.js gateway pays.
 *
 * One model runtime process serves every path: the node-llama-cpp runtime (agent/runtimes/
 * llamaCppServer.ts) that Mariner's embedded agent starts for the demo model. A chat completion
 * (`POST /v1/chat/completions`, OpenAI API) with the same body goes
 *   - direct:  to that runtime on loopback (its port read from /proc: it listens on `--port 0`);
 *   - node-proxy (the floor; --no-floor leaves it out): through test/bench/nodeProxy.mjs, a child process
 *              `node nodeProxy.mjs --upstream <the runtime>`: `http.createServer` forwarding to the runtime
 *              with `http.request` on a keep-alive `http.Agent`, status and content-type copied, both
 *              bodies piped, nothing else. A gateway's CPU per request cannot go below what Node's HTTP
 *              stack costs to relay one request and its chunks; `mariner up` relays each request twice in
 *              its process (the agent's hop and the control plane's), so its floor is about twice this one;
 *   - portkey: through `@portkey-ai/gateway` (the npm package's node server, a child process), told to
 *              use the runtime by the headers `x-portkey-provider: openai` and `x-portkey-custom-host`;
 *   - mariner: through Mariner, started as a user starts it (`node dist/bin/mariner.js up --demo-model`
 *              after `node scripts/build.mjs`, what `npm start` runs; a fresh temporary data dir,
 *              embedded PGlite, a free port), with the admin key its banner prints.
 * Every answer is checked (HTTP 200, content present; a stream: text/event-stream, no error event, ends
 * with `data: [DONE]` and nothing after it); any failure aborts the run with exit status 1.
 *
 * Phases, each with the paths in blocks that rotate which path goes first every round, after a warm-up,
 * `max_tokens` fixed, `temperature: 0`, a fixed `seed` (greedy decoding: every answer has the same text):
 *   - stream-1:  streaming, one request in flight: time to first token, per-chunk gap, total;
 *   - plain-1:   not streaming, one in flight: total;
 *   - stream-C:  streaming, C in flight for each C of --concurrency (a closed loop): streams/s.
 * CPU per request: utime + stime (/proc/<pid>/stat) of each gateway (the node proxy's process; Portkey's;
 * Mariner's and its children but the runtime), of the runtime and of this client, before and after every
 * block, summed over the path's blocks and divided by its requests. A gateway also burns CPU when idle (Mariner's
 * agent, timers); its rate while the other paths run is reported, and a net figure less that rate.
 * Writes bench-results/peers.{json,md}.
 *
 *   --requests N             stream-1 and plain-1: measured requests per path (default 300; --quick 40)
 *   --concurrent-requests N  each stream-C phase: measured streams per path (default 480; --quick 64)
 *   --concurrency C,...      in-flight levels of the stream-C phases (default 16,64)
 *   --warmup W               warm-up requests per path before each one-in-flight phase (default 20;
 *                            --quick 5); a stream-C phase warms up with one block of C per path
 *   --block B                one-in-flight blocks of B requests (default 50; --quick 20)
 *   --concurrent-block B     stream-C blocks of B streams (default 160; --quick 64)
 *   --max-tokens T           max_tokens of every request (default 16)
 *   --timeout-s S            a request with no complete answer after S seconds aborts the run (default 60)
 *   --quick                  the smaller defaults above: a look in about a minute, CPU figures coarse
 *   --no-floor               leave out the node-proxy path (default: measured)
 *   --mariner-root DIR       measure the Mariner of another checkout (built there; its node_modules
 *                            must be installed), e.g. an older commit for a before/after on one machine
 *   --baseline-root DIR      also measure the Mariner of another checkout (an older commit; built there,
 *                            its node_modules installed) as a fourth path, mariner-before, in the same
 *                            blocks: the before and after of a change in one run (issue 15's note)
 *
 * With --baseline-root, the baseline's Mariner starts exactly as the main one (`node scripts/build.mjs`
 * there, then `mariner up --demo-model`, its own temporary data dir and free port), and its agent starts
 * its own runtime: mariner-before routes to that runtime process while the other paths share one.
 * Both runtimes serve the same demo model file with the same flags (their /proc/<pid>/cmdline compared,
 * checkout and data dir aside; the model files' SHA-256) and every answer's text is checked against the
 * phase's first whatever its path. Its CPU per request is its process with its children but its runtime;
 * its runtime's CPU is reported on its own.
 *
 * Everything runs on one machine: the client, the gateways and the runtime share its cores. Linux only.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BenchAbort,
  benchEnvironment,
  descendantPids,
  intOption,
  latencyStats,
  type LatencyStats,
  listeningPorts,
  markdownTable,
  parseBenchArgs,
  processArgv,
  processCpuMs,
  runBench,
  streamChatCompletion,
  streamProblem,
  textTable,
  UsageError,
} from './support.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const RESULTS_DIR = path.join(ROOT, 'bench-results');
const PORTKEY_DIR = path.join(ROOT, 'node_modules/@portkey-ai/gateway');
const NODE_PROXY = path.join(ROOT, 'test/bench/nodeProxy.mjs');
/** The version issue 15 names, pinned exactly in package.json; another one makes other figures. */
const PORTKEY_VERSION = '1.15.2';
/** `mariner up --demo-model`'s model (bin/demoModel.ts): the tiny random GGUF of the tests, on the CPU. */
const MODEL_ID = 'mariner-demo';
const PROMPT = 'Tell me a story about a lighthouse.';
const SEED = 42;
const START_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 30_000;

type PathName = 'direct' | 'node-proxy' | 'portkey' | 'mariner' | 'mariner-before';
/** The paths measured: the three of issue 15, the node-proxy floor but with --no-floor, and mariner-before with --baseline-root. */
const pathsMeasured = (options: Options): PathName[] => [
  'direct',
  ...(options.floor ? (['node-proxy'] as const) : []),
  'portkey',
  'mariner',
  ...(options.baselineRoot ? (['mariner-before'] as const) : []),
];
const PATH_LABELS: Record<PathName, string> = {
  direct: 'direct: the runtime on loopback',
  'node-proxy':
    'node proxy (test/bench/nodeProxy.mjs: http.createServer → http.request on a keep-alive Agent, bodies piped) → the runtime: the floor of a Node.js gateway',
  portkey: `Portkey AI gateway ${PORTKEY_VERSION} (node server) → the runtime`,
  mariner: 'Mariner (mariner up: REST → gateway → inference → agent tunnel → agent) → the runtime',
  'mariner-before': 'Mariner of the baseline checkout (mariner up, the same way) → its own runtime (the same model and flags)',
};
/** The processes measured; node-proxy but with --no-floor, runtime-before and mariner-before only with --baseline-root. */
type ProcessName = 'runtime' | 'runtime-before' | 'node-proxy' | 'portkey' | 'mariner' | 'mariner-before' | 'client';
/** The process whose CPU each path adds; direct has none. */
const GATEWAY_OF: Record<PathName, ProcessName | null> = {
  direct: null,
  'node-proxy': 'node-proxy',
  portkey: 'portkey',
  mariner: 'mariner',
  'mariner-before': 'mariner-before',
};
/** Why node-proxy is measured: the report's header and the JSON say it. */
const FLOOR_NOTE =
  'test/bench/nodeProxy.mjs, a minimal reverse proxy written for this benchmark (http.createServer → ' +
  'http.request on a keep-alive http.Agent, status and content-type copied, both bodies piped; no auth, no parsing) in front of the same runtime. ' +
  'A gateway’s CPU per request cannot go below what Node’s HTTP stack costs to relay one request and its chunks: this path’s CPU. ' +
  'Mariner’s `mariner up` relays each request twice inside its process (the agent’s hop and the control plane’s), so its floor is about twice this path’s CPU.';
/** The main table's name of a path: the floor says what it is. */
const ROW_NAMES: Partial<Record<PathName, string>> = { 'node-proxy': 'node proxy (floor: http pipe)' };

interface Options {
  requests: number;
  concurrentRequests: number;
  concurrency: number[];
  warmup: number;
  block: number;
  concurrentBlock: number;
  maxTokens: number;
  timeoutSeconds: number;
  quick: boolean;
  /** Measure the node-proxy path, the floor of a Node.js gateway (default; --no-floor: not). */
  floor: boolean;
  /** The checkout whose Mariner is measured (default: this one), e.g. an older commit for a before/after. */
  marinerRoot: string;
  /** The checkout whose Mariner is also measured, as mariner-before (--baseline-root); null: none. */
  baselineRoot: string | null;
}

const CLI_OPTIONS = {
  requests: { type: 'string' },
  'concurrent-requests': { type: 'string' },
  concurrency: { type: 'string', default: '16,64' },
  warmup: { type: 'string' },
  block: { type: 'string' },
  'concurrent-block': { type: 'string' },
  'max-tokens': { type: 'string', default: '16' },
  'timeout-s': { type: 'string', default: '60' },
  quick: { type: 'boolean', default: false },
  'no-floor': { type: 'boolean', default: false },
  'mariner-root': { type: 'string' },
  'baseline-root': { type: 'string' },
} as const;

/** Defaults in one place: the full run's, and --quick's where it differs. */
function parseOptions(argv: string[]): Options {
  const values = parseBenchArgs(
    argv,
    CLI_OPTIONS,
    '--requests N --concurrent-requests N --concurrency C,... --warmup W --block B --concurrent-block B --max-tokens T --timeout-s S --quick --no-floor --mariner-root DIR --baseline-root DIR',
  );
  const quick = values.quick;
  const pick = (name: keyof typeof values, full: number, short: number, min: number) =>
    intOption(name, (values[name] as string | undefined) ?? String(quick ? short : full), min);
  const baselineRoot = values['baseline-root'] === undefined ? null : path.resolve(values['baseline-root']);
  if (baselineRoot && !existsSync(path.join(baselineRoot, 'scripts/build.mjs'))) {
    throw new UsageError(`--baseline-root ${baselineRoot}: no scripts/build.mjs there (not a Mariner checkout)`);
  }
  const concurrency = values.concurrency.split(',').map((level) => intOption('concurrency', level.trim(), 2));
  return {
    requests: pick('requests', 300, 40, 1),
    concurrentRequests: pick('concurrent-requests', 480, 64, 1),
    concurrency,
    warmup: pick('warmup', 20, 5, 0),
    block: pick('block', 50, 20, 1),
    concurrentBlock: pick('concurrent-block', 160, 64, 1),
    // At least 2: one content chunk has no gap to measure.
    maxTokens: intOption('max-tokens', values['max-tokens'], 2),
    timeoutSeconds: intOption('timeout-s', values['timeout-s'], 1),
    quick,
    floor: !values['no-floor'],
    marinerRoot: path.resolve(values['mariner-root'] ?? ROOT),
    baselineRoot,
  };
}

// ---------------------------------------------------------------------------------------------
// The servers: child processes started as their users start them.

interface ChildServer {
  name: string;
  child: ChildProcess;
  pid: number;
  /** The last 64 KiB of its stdout and stderr, for error messages. */
  output: () => string;
  /** Signal, then SIGKILL after STOP_TIMEOUT_MS; resolves once it has exited. */
  stop: (signal: NodeJS.Signals) => Promise<void>;
}

/** The environment of a user's shell: none of this process's MARINER_*, DATABASE_URL, NODE_ENV, NODE_OPTIONS or npm_*. */
function userEnv(settings: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('MARINER_') || key.startsWith('npm_') || ['DATABASE_URL', 'NODE_ENV', 'NODE_OPTIONS'].includes(key)) continue;
    env[key] = value;
  }
  return { ...env, ...settings };
}

/** Spawns a server and resolves once `ready` accepts what it printed to stdout. */
async function startChild(name: string, args: string[], env: NodeJS.ProcessEnv, ready: (stdout: string) => boolean, cwd = ROOT): Promise<ChildServer> {
  const child = spawn(process.execPath, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let output = '';
  const keep = (chunk: string) => (output = (output + chunk).slice(-64 * 1024));
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    if (stdout.length < 64 * 1024) stdout += chunk;
    keep(chunk);
  });
  child.stderr!.setEncoding('utf8').on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const server: ChildServer = {
    name,
    child,
    pid: child.pid ?? -1,
    output: () => output,
    async stop(signal) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    },
  };
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => fail(`${name} printed no ready line within ${START_TIMEOUT_MS / 1000} s`), START_TIMEOUT_MS);
    const check = () => ready(stdout) && finish(resolve);
    const onClose = (code: number | null, signal: string | null) => fail(`${name} exited (code ${code}, signal ${signal}) before it was ready`);
    const fail = (message: string) => finish(() => reject(new BenchAbort(`${message}\n--- its output ---\n${output}`)));
    const finish = (settle: () => void) => {
      clearTimeout(timer);
      child.stdout!.off('data', check);
      child.off('close', onClose);
      settle();
    };
    child.stdout!.on('data', check);
    child.once('close', onClose);
    child.once('error', (error) => finish(() => reject(error)));
  });
  return server;
}

/** `npm start` without npm: build dist/ if a source changed (untimed), then `node dist/bin/mariner.js up --demo-model`. */
async function startMariner(name: string, dataDir: string, root: string): Promise<{ server: ChildServer; url: string; adminKey: string }> {
  execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  const banner = /Admin API key \(shown once[^\n]*\n\s*(sk-[A-Za-z0-9_-]+)\n[\s\S]*Demo model:/;
  const server = await startChild(
    name,
    ['--enable-source-maps', 'dist/bin/mariner.js', 'up', '--demo-model'],
    userEnv({ MARINER_DATA_DIR: dataDir, MARINER_PORT: '0', MARINER_LOG_LEVEL: 'warn' }),
    (stdout) => banner.test(stdout),
    root,
  );
  const text = server.output();
  const url = /OpenAI API:\s+(http:\/\/127\.0\.0\.1:\d+)\/v1/.exec(text)?.[1];
  const adminKey = banner.exec(text)?.[1];
  if (!url || !adminKey) throw new BenchAbort(`no URL or admin key in ${name}'s banner:\n${text}`);
  return { server, url, adminKey };
}

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** A package's version as installed, or 'absent'. */
function installedVersion(packageDir: string): string {
  try {
    return (JSON.parse(readFileSync(path.join(packageDir, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'absent';
  }
}

/**
 * Portkey's node server, as `npx @portkey-ai/gateway` starts it (the package's bin), `--headless`: no
 * web UI or log stream, as a server runs it. It needs @hono/node-server 1.14.1 (package.json overrides):
 * with the 1.19 that npm resolves for its `^1.3.3`, every streamed request answers 500 (`TypeError:
 * immutable` as Portkey appends a header to the upstream response's; Portkey-AI/gateway#1389).
 */
async function startPortkey(): Promise<{ server: ChildServer; url: string; versions: Record<string, string> }> {
  const manifest = JSON.parse(readFileSync(path.join(PORTKEY_DIR, 'package.json'), 'utf8')) as { version: string; bin: string | Record<string, string> };
  if (manifest.version !== PORTKEY_VERSION) throw new BenchAbort(`@portkey-ai/gateway ${manifest.version} is installed, not ${PORTKEY_VERSION}: run npm ci`);
  const bin = typeof manifest.bin === 'string' ? manifest.bin : Object.values(manifest.bin)[0]!;
  const nested = path.join(PORTKEY_DIR, 'node_modules/@hono/node-server');
  const honoNodeServer = installedVersion(nested) !== 'absent' ? installedVersion(nested) : installedVersion(path.join(ROOT, 'node_modules/@hono/node-server'));
  const port = await freePort();
  const server = await startChild('portkey', [path.join(PORTKEY_DIR, bin), `--port=${port}`, '--headless'], userEnv({}), (stdout) =>
    stdout.includes('Ready for connections'),
  );
  return { server, url: `http://127.0.0.1:${port}`, versions: { '@portkey-ai/gateway': manifest.version, '@hono/node-server': honoNodeServer } };
}

/**
 * The floor: test/bench/nodeProxy.mjs in front of the runtime, `node` without flags, as Portkey runs. It
 * listens on a free port of its own choosing and prints it.
 */
async function startNodeProxy(runtimePort: number): Promise<{ server: ChildServer; url: string }> {
  const ready = /node-proxy listening on (http:\/\/127\.0\.0\.1:\d+)\n/;
  const server = await startChild('node-proxy', [NODE_PROXY, '--upstream', `http://127.0.0.1:${runtimePort}`], userEnv({}), (stdout) => ready.test(stdout));
  return { server, url: ready.exec(server.output())![1]! };
}

interface RuntimeProcess {
  pid: number;
  port: number;
  argv: string[];
}

/** The llamaCppServer processes below Mariner's process. */
const runtimePids = (marinerPid: number) => descendantPids(marinerPid).filter((pid) => processArgv(pid).some((arg) => /llamaCppServer\.[jt]s$/.test(arg)));

/** The runtime Mariner's agent started for the demo model: its only llamaCppServer child, listening on one port. */
async function findRuntime(marinerPid: number): Promise<RuntimeProcess> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const pids = runtimePids(marinerPid);
    if (pids.length > 1) throw new BenchAbort(`Mariner runs ${pids.length} runtimes (${pids.join(', ')}); every path must use one`);
    const ports = pids.length === 1 ? listeningPorts(pids[0]!) : [];
    if (ports.length === 1) {
      const runtime = { pid: pids[0]!, port: ports[0]!, argv: processArgv(pids[0]!) };
      const health = (await (await fetch(`http://127.0.0.1:${runtime.port}/health`)).json()) as { model?: string };
      if (health.model !== MODEL_ID) throw new BenchAbort(`the runtime on port ${runtime.port} serves ${JSON.stringify(health)}, not ${MODEL_ID}`);
      return runtime;
    }
    if (Date.now() > deadline)
      throw new BenchAbort(
        `no runtime listening below Mariner's process after ${START_TIMEOUT_MS / 1000} s (pids ${pids.join(', ')}, ports ${ports.join(', ')})`,
      );
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/**
 * mariner-before's runtime is not the one the other paths share: it must be the same runtime all the same,
 * so that only the gateway differs. Its command line (/proc/<pid>/cmdline), read with each checkout's
 * path and each data dir's replaced by a placeholder, must equal the main runtime's, and its model file
 * (the `--model` argument) must have the same bytes.
 */
function checkSameRuntime(
  main: { runtime: RuntimeProcess; root: string; dataDir: string },
  before: { runtime: RuntimeProcess; root: string; dataDir: string },
): void {
  const flags = ({ runtime, root, dataDir }: typeof main) => runtime.argv.map((arg) => arg.split(dataDir).join('<data dir>').split(root).join('<checkout>'));
  const [mainFlags, beforeFlags] = [flags(main), flags(before)];
  if (JSON.stringify(mainFlags) !== JSON.stringify(beforeFlags)) {
    throw new BenchAbort(`mariner-before's runtime runs with other flags than the main one's:\n  ${mainFlags.join(' ')}\n  ${beforeFlags.join(' ')}`);
  }
  const modelDigest = ({ runtime }: typeof main) => {
    const model = runtime.argv[runtime.argv.indexOf('--model') + 1];
    if (!runtime.argv.includes('--model') || !model) throw new BenchAbort(`no --model in the runtime's command line: ${runtime.argv.join(' ')}`);
    return createHash('sha256').update(readFileSync(model)).digest('hex');
  };
  if (modelDigest(main) !== modelDigest(before))
    throw new BenchAbort("mariner-before's runtime serves another model file than the main one's (SHA-256 differs)");
}

// ---------------------------------------------------------------------------------------------
// The client: one request, checked. Every path uses it unchanged.

interface Target {
  url: string;
  headers: Record<string, string>;
}

interface Sample {
  /** Request start → the first chunk with non-empty content (streams only). */
  ttftNs: bigint | null;
  /** A stream's mean gap between content chunks after the first; null with one chunk or no stream. */
  gapNs: bigint | null;
  /** Request start → the end of the body. */
  totalNs: bigint;
  chunks: number;
  /** Body reads that brought the content chunks: as many as the chunks when they stream, 1 when they come in one burst. */
  reads: number;
  text: string;
}

/** One chat completion; rejects with the reason when the answer does not count. */
async function requestOnce(target: Target, body: string, stream: boolean, timeoutMs: number): Promise<Sample> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    if (stream) {
      const reply = await streamChatCompletion(target.url, target.headers, body, signal);
      const problem = streamProblem(reply);
      if (problem) throw new Error(problem);
      const first = reply.contentAtNs[0]!;
      const chunks = reply.contentAtNs.length;
      const gapNs = chunks > 1 ? (reply.contentAtNs[chunks - 1]! - first) / BigInt(chunks - 1) : null;
      return { ttftNs: first, gapNs, totalNs: reply.totalNs, chunks, reads: new Set(reply.contentAtNs).size, text: reply.text };
    }
    const start = process.hrtime.bigint();
    const response = await fetch(target.url, { method: 'POST', headers: target.headers, body, signal });
    const text = await response.text();
    const totalNs = process.hrtime.bigint() - start;
    if (response.status !== 200) throw new Error(`HTTP ${response.status} ${text.slice(0, 500)}`);
    const content = (JSON.parse(text) as { choices?: { message?: { content?: unknown } }[] }).choices?.[0]?.message?.content;
    if (typeof content !== 'string' || content === '') throw new Error(`no content: ${text.slice(0, 500)}`);
    return { ttftNs: null, gapNs: null, totalNs, chunks: 1, reads: 1, text: content };
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(
      `${signal.aborted ? `no complete answer within ${timeoutMs / 1000} s: ` : ''}${(error as Error).message}${cause ? ` (${cause.code ?? ''} ${cause.message ?? ''})` : ''}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Measuring: phases of interleaved blocks, and the CPU each process used during each block.

interface Phase {
  key: string;
  label: string;
  stream: boolean;
  concurrency: number;
  requests: number;
  block: number;
  warmup: number;
}

/** What the blocks of one path used in one phase. */
interface PathRecord {
  samples: Sample[];
  wallNs: bigint;
  cpuMs: Record<ProcessName, number>;
  differentText: number;
}

const noCpu = (): Record<ProcessName, number> => ({
  runtime: 0,
  'runtime-before': 0,
  'node-proxy': 0,
  portkey: 0,
  mariner: 0,
  'mariner-before': 0,
  client: 0,
});

/** The server processes measured; the node proxy but with --no-floor; the baseline's Mariner and its runtime with --baseline-root only. */
interface ServerPids {
  runtime: number;
  nodeProxy: number | null;
  portkey: number;
  mariner: number;
  before: { mariner: number; runtime: number } | null;
}

/**
 * CPU so far, ms, of the runtime, the node proxy (0 with --no-floor), Portkey, Mariner with its children but
 * the runtime, this process, and with --baseline-root the baseline's Mariner with its children but its
 * runtime, and that runtime (0 without).
 */
function cpuSnapshot(pids: ServerPids): Record<ProcessName, number> {
  const gone = (name: string) => {
    throw new BenchAbort(`the ${name} process is gone`);
  };
  const marinerTree = [pids.mariner, ...descendantPids(pids.mariner)].filter((pid) => pid !== pids.runtime);
  const beforeTree = pids.before ? [pids.before.mariner, ...descendantPids(pids.before.mariner)].filter((pid) => pid !== pids.before!.runtime) : [];
  const client = process.cpuUsage();
  // A child of Mariner's that exits between two snapshots takes its CPU with it (into Mariner's cutime).
  const treeCpu = (tree: number[]) => tree.reduce((sum, pid) => sum + (processCpuMs(pid) ?? 0), 0);
  return {
    runtime: processCpuMs(pids.runtime) ?? gone('runtime'),
    'runtime-before': pids.before ? (processCpuMs(pids.before.runtime) ?? gone('mariner-before runtime')) : 0,
    'node-proxy': pids.nodeProxy === null ? 0 : (processCpuMs(pids.nodeProxy) ?? gone('node proxy')),
    portkey: processCpuMs(pids.portkey) ?? gone('Portkey'),
    mariner: treeCpu(marinerTree),
    'mariner-before': treeCpu(beforeTree),
    client: (client.user + client.system) / 1000,
  };
}

/** Runs every phase; returns the records of its measured blocks, by phase key and path. */
async function measure(
  phases: Phase[],
  paths: PathName[],
  targets: Record<PathName, Target>,
  bodies: { stream: string; plain: string },
  pids: ServerPids,
  timeoutMs: number,
  log: (line: string) => void,
): Promise<Record<string, Record<PathName, PathRecord>>> {
  const records: Record<string, Record<PathName, PathRecord>> = {};
  for (const phase of phases) {
    const record = Object.fromEntries(
      paths.map((name): [PathName, PathRecord] => [name, { samples: [], wallNs: 0n, cpuMs: noCpu(), differentText: 0 }]),
    ) as Record<PathName, PathRecord>;
    records[phase.key] = record;
    /**
     * The first answer's text in this phase, whatever its path: greedy decoding of one prompt on one runtime (or
     * on mariner-before's, the same model and flags) gives every other the same.
     */
    let referenceText: string | undefined;

    const runBlock = async (name: PathName, count: number, measured: boolean) => {
      let started = 0;
      const worker = async () => {
        while (started < count) {
          started++;
          const sample = await requestOnce(targets[name], phase.stream ? bodies.stream : bodies.plain, phase.stream, timeoutMs).catch((error: Error) => {
            throw new BenchAbort(`${PATH_LABELS[name]}, ${phase.label}${measured ? '' : ' warm-up'}: ${error.message}`);
          });
          referenceText ??= sample.text;
          if (!measured) continue;
          record[name].samples.push(sample);
          if (sample.text !== referenceText) record[name].differentText++;
        }
      };
      const before = cpuSnapshot(pids);
      const startNs = process.hrtime.bigint();
      await Promise.all(Array.from({ length: Math.min(phase.concurrency, count) }, worker));
      const wallNs = process.hrtime.bigint() - startNs;
      const after = cpuSnapshot(pids);
      if (!measured) return;
      record[name].wallNs += wallNs;
      for (const process of Object.keys(before) as ProcessName[]) record[name].cpuMs[process] += after[process] - before[process];
    };

    /** Blocks of every path in turn, the first path rotating each round, so the machine's noise falls on all alike. */
    const interleaved = async (perPath: number, block: number, measured: boolean) => {
      const rounds = Math.ceil(perPath / block);
      const done = Object.fromEntries(paths.map((name) => [name, 0])) as Record<PathName, number>;
      for (let round = 0; round < rounds; round++) {
        for (let i = 0; i < paths.length; i++) {
          const name = paths[(round + i) % paths.length]!;
          const due = Math.round((perPath * (round + 1)) / rounds);
          if (due > done[name]) await runBlock(name, due - done[name], measured);
          done[name] = Math.max(done[name], due);
        }
      }
    };

    log(`${phase.label}: ${phase.warmup} warm-up + ${phase.requests} per path, blocks of ${phase.block}…`);
    if (phase.warmup > 0) await interleaved(phase.warmup, phase.concurrency === 1 ? phase.block : phase.warmup, false);
    await interleaved(phase.requests, phase.block, true);
  }
  return records;
}

// ---------------------------------------------------------------------------------------------
// Figures

const round2 = (x: number) => Math.round(x * 100) / 100;
type Percentiles = Omit<LatencyStats, 'requestsPerSecond'>;

interface PathStats {
  requests: number;
  /** Requests per second over the wall time of the path's blocks. */
  requestsPerSecond: number;
  ttft: Percentiles | null;
  chunkGap: Percentiles | null;
  total: Percentiles;
  contentChunks: { min: number; max: number };
  /** Per stream, the body reads that brought its content chunks (Sample.reads): the median over streams. */
  contentReadsP50: number;
  /** Answers whose text differs from the phase's first (expected 0). */
  differentText: number;
  cpuMsPerRequest: {
    /** The path's gateway process(es) while its blocks ran; null for direct. */
    gateway: number | null;
    /** The same, less the gateway's idle rate (gatewayIdleMsPerSecond) over the path's wall time. */
    gatewayNet: number | null;
    /** The runtime that every path but mariner-before shares (mariner-before's: idle, or leftovers). */
    runtime: number;
    /** With --baseline-root: mariner-before's own runtime (the others': idle, or leftovers). */
    runtimeBefore?: number;
    client: number;
  };
  /** The gateway's CPU while the other paths' blocks ran, ms per second: its cost when it serves nothing. */
  gatewayIdleMsPerSecond: number | null;
}

function pathStats(records: Record<PathName, PathRecord>, name: PathName, paths: PathName[]): PathStats {
  const { samples, wallNs, cpuMs, differentText } = records[name];
  const percentiles = (ns: bigint[]): Percentiles => {
    const { requestsPerSecond: _rate, ...rest } = latencyStats(ns, wallNs);
    return rest;
  };
  const gateway = GATEWAY_OF[name];
  const n = samples.length;
  let idle: number | null = null;
  if (gateway) {
    const others = paths.filter((other) => other !== name);
    const otherWallS = others.reduce((sum, other) => sum + Number(records[other].wallNs) / 1e9, 0);
    idle = others.reduce((sum, other) => sum + records[other].cpuMs[gateway], 0) / otherWallS;
  }
  const streamed = samples[0]?.ttftNs !== null;
  const gaps = samples.flatMap((s) => (s.gapNs === null ? [] : [s.gapNs]));
  const chunks = samples.map((s) => s.chunks);
  return {
    requests: n,
    requestsPerSecond: Math.round((n / (Number(wallNs) / 1e9)) * 10) / 10,
    ttft: streamed ? percentiles(samples.map((s) => s.ttftNs!)) : null,
    chunkGap: streamed && gaps.length > 0 ? percentiles(gaps) : null,
    total: percentiles(samples.map((s) => s.totalNs)),
    contentChunks: { min: Math.min(...chunks), max: Math.max(...chunks) },
    contentReadsP50: samples.map((s) => s.reads).sort((a, b) => a - b)[Math.max(0, Math.ceil(n / 2) - 1)]!,
    differentText,
    cpuMsPerRequest: {
      gateway: gateway ? round2(cpuMs[gateway] / n) : null,
      gatewayNet: gateway && idle !== null ? round2((cpuMs[gateway] - idle * (Number(wallNs) / 1e9)) / n) : null,
      runtime: round2(cpuMs.runtime / n),
      ...(paths.includes('mariner-before') ? { runtimeBefore: round2(cpuMs['runtime-before'] / n) } : {}),
      client: round2(cpuMs.client / n),
    },
    gatewayIdleMsPerSecond: idle === null ? null : round2(idle),
  };
}

/** A path's figures less direct's (ms) and its throughput as a share of direct's. */
function addedOverDirect(path: PathStats, direct: PathStats) {
  const ms = (x: number) => Math.round(x * 1000) / 1000;
  return {
    ttftP50: path.ttft && direct.ttft ? ms(path.ttft.p50 - direct.ttft.p50) : null,
    ttftP99: path.ttft && direct.ttft ? ms(path.ttft.p99 - direct.ttft.p99) : null,
    chunkGapP50: path.chunkGap && direct.chunkGap ? ms(path.chunkGap.p50 - direct.chunkGap.p50) : null,
    totalP50: ms(path.total.p50 - direct.total.p50),
    totalP99: ms(path.total.p99 - direct.total.p99),
    throughputRatio: round2(path.requestsPerSecond / direct.requestsPerSecond),
  };
}

/**
 * --baseline-root: that checkout's Mariner, started as the main one (built there, its own data dir and
 * port), its demo model activated by a first request, and the runtime its agent started for it.
 */
async function startBaseline(
  root: string,
  dataDir: string,
  body: string,
  log: (line: string) => void,
): Promise<{ server: ChildServer; target: Target; runtime: RuntimeProcess }> {
  log(`building ${root}/dist/ and starting its mariner up --demo-model (mariner-before)…`);
  const before = await startMariner('mariner-before', dataDir, root);
  const target: Target = {
    url: `${before.url}/v1/chat/completions`,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${before.adminKey}` },
  };
  try {
    await requestOnce(target, body, false, START_TIMEOUT_MS).catch((error: Error) => {
      throw new BenchAbort(`mariner-before's first chat completion failed: ${error.message}\n--- its output ---\n${before.server.output()}`);
    });
    const runtime = await findRuntime(before.server.pid);
    log(`mariner-before's own runtime: pid ${runtime.pid}, port ${runtime.port}`);
    return { server: before.server, target, runtime };
  } catch (error) {
    await before.server.stop('SIGINT');
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const options = parseOptions(argv);
  const command = `npm run bench:peers${argv.length ? ` -- ${argv.join(' ')}` : ''}`;
  const log = (line: string) => process.stderr.write(`${line}\n`);
  if (process.platform !== 'linux') throw new UsageError('this benchmark reads processes from /proc: Linux only');

  const paths = pathsMeasured(options);
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'mariner-bench-peers-'));
  const beforeDataDir = options.baselineRoot ? mkdtempSync(path.join(os.tmpdir(), 'mariner-bench-peers-before-')) : null;
  const servers: ChildServer[] = [];
  let closing: Promise<void> | undefined;
  const cleanUp = () =>
    (closing ??= (async () => {
      // Ctrl-C for Mariner (it drains, then closes its runtime); Portkey and the node proxy have no drain.
      await Promise.all(servers.map((server) => server.stop(server.name.startsWith('mariner') ? 'SIGINT' : 'SIGTERM')));
      for (const dir of [dataDir, beforeDataDir]) if (dir) rmSync(dir, { recursive: true, force: true });
    })());
  const onSignal = (signal: NodeJS.Signals) => {
    log(`\n${signal}: stopping the node proxy, Portkey and Mariner…`);
    void cleanUp().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    const loadBefore = os.loadavg();
    const setupStarted = process.hrtime.bigint();
    log('building dist/ and starting mariner up --demo-model…');
    const mariner = await startMariner('mariner', dataDir, options.marinerRoot);
    servers.push(mariner.server);
    const requestBody = { model: MODEL_ID, messages: [{ role: 'user', content: PROMPT }], max_tokens: options.maxTokens, temperature: 0, seed: SEED };
    const bodies = { stream: JSON.stringify({ ...requestBody, stream: true }), plain: JSON.stringify(requestBody) };
    const json = { 'content-type': 'application/json' };
    const marinerTarget: Target = { url: `${mariner.url}/v1/chat/completions`, headers: { ...json, authorization: `Bearer ${mariner.adminKey}` } };
    // The demo model is allocated on demand: the first request activates it and the agent starts its runtime.
    log('first request (starts the runtime)…');
    await requestOnce(marinerTarget, bodies.plain, false, START_TIMEOUT_MS).catch((error: Error) => {
      throw new BenchAbort(`Mariner's first chat completion failed: ${error.message}\n--- its output ---\n${mariner.server.output()}`);
    });
    const runtime = await findRuntime(mariner.server.pid);
    log(`runtime: pid ${runtime.pid}, port ${runtime.port}${options.baselineRoot ? '' : '; starting Portkey…'}`);
    const before = options.baselineRoot && beforeDataDir ? await startBaseline(options.baselineRoot, beforeDataDir, bodies.plain, log) : null;
    if (before) {
      servers.push(before.server);
      checkSameRuntime({ runtime, root: options.marinerRoot, dataDir }, { runtime: before.runtime, root: options.baselineRoot!, dataDir: beforeDataDir! });
      log('starting Portkey…');
    }
    const portkey = await startPortkey();
    servers.push(portkey.server);
    if (options.floor) log('starting the node proxy (the floor)…');
    const nodeProxy = options.floor ? await startNodeProxy(runtime.port) : null;
    if (nodeProxy) servers.push(nodeProxy.server);
    const targets: Partial<Record<PathName, Target>> = {
      direct: { url: `http://127.0.0.1:${runtime.port}/v1/chat/completions`, headers: json },
      ...(nodeProxy ? { 'node-proxy': { url: `${nodeProxy.url}/v1/chat/completions`, headers: json } } : {}),
      portkey: {
        url: `${portkey.url}/v1/chat/completions`,
        // Portkey forwards the bearer as the provider's API key; the runtime asks for none.
        headers: { ...json, authorization: 'Bearer unused', 'x-portkey-provider': 'openai', 'x-portkey-custom-host': `http://127.0.0.1:${runtime.port}/v1` },
      },
      mariner: marinerTarget,
      ...(before ? { 'mariner-before': before.target } : {}),
    };
    const setupSeconds = Math.round(Number(process.hrtime.bigint() - setupStarted) / 1e7) / 100;

    const phases: Phase[] = [
      {
        key: 'stream-1',
        label: 'streaming, 1 in flight',
        stream: true,
        concurrency: 1,
        requests: options.requests,
        block: options.block,
        warmup: options.warmup,
      },
      {
        key: 'plain-1',
        label: 'non-streaming, 1 in flight',
        stream: false,
        concurrency: 1,
        requests: options.requests,
        block: options.block,
        warmup: options.warmup,
      },
      ...options.concurrency.map((c) => ({
        key: `stream-${c}`,
        label: `streaming, ${c} in flight`,
        stream: true,
        concurrency: c,
        requests: options.concurrentRequests,
        block: Math.max(options.concurrentBlock, c),
        warmup: c,
      })),
    ];
    const pids: ServerPids = {
      runtime: runtime.pid,
      nodeProxy: nodeProxy?.server.pid ?? null,
      portkey: portkey.server.pid,
      mariner: mariner.server.pid,
      before: before ? { mariner: before.server.pid, runtime: before.runtime.pid } : null,
    };
    const measuredStarted = process.hrtime.bigint();
    const records = await measure(phases, paths, targets as Record<PathName, Target>, bodies, pids, options.timeoutSeconds * 1000, log);
    const durationSeconds = Math.round(Number(process.hrtime.bigint() - measuredStarted) / 1e7) / 100;

    // The same runtime served the whole run: no crash and restart, no second replica Mariner could have used.
    const runtimesAfter = runtimePids(mariner.server.pid);
    if (runtimesAfter.length !== 1 || runtimesAfter[0] !== runtime.pid) {
      throw new BenchAbort(`Mariner's runtime processes changed during the run: ${runtime.pid} before, ${JSON.stringify(runtimesAfter)} after`);
    }
    const beforeRuntimesAfter = before ? runtimePids(before.server.pid) : [];
    if (before && (beforeRuntimesAfter.length !== 1 || beforeRuntimesAfter[0] !== before.runtime.pid)) {
      throw new BenchAbort(
        `mariner-before's runtime processes changed during the run: ${before.runtime.pid} before, ${JSON.stringify(beforeRuntimesAfter)} after`,
      );
    }

    const stats = Object.fromEntries(
      phases.map((phase) => [phase.key, Object.fromEntries(paths.map((name) => [name, pathStats(records[phase.key]!, name, paths)]))]),
    ) as Record<string, Record<PathName, PathStats>>;
    const report = {
      ...benchEnvironment('peers', command),
      loadAverage: { before: loadBefore.map(round2), after: os.loadavg().map(round2) },
      mariner: {
        commit: gitDescribe(options.marinerRoot),
        command: 'node --enable-source-maps dist/bin/mariner.js up --demo-model',
        database: 'embedded PGlite',
        pid: pids.mariner,
      },
      portkey: {
        versions: portkey.versions,
        command: `node ${path.relative(ROOT, PORTKEY_DIR)}/build/start-server.js --port=<free> --headless`,
        pid: pids.portkey,
      },
      ...(nodeProxy
        ? {
            nodeProxy: {
              command: `node ${path.relative(ROOT, NODE_PROXY)} --upstream http://127.0.0.1:${runtime.port}`,
              pid: nodeProxy.server.pid,
              note: FLOOR_NOTE,
            },
          }
        : {}),
      runtime: { ...runtime, model: 'mariner up --demo-model: the tiny random GGUF of agent/runtimes/tinyGguf.ts (context 4096), node-llama-cpp on the CPU' },
      ...(before
        ? {
            marinerBefore: {
              root: options.baselineRoot!,
              commit: gitDescribe(options.baselineRoot!),
              command: 'node --enable-source-maps dist/bin/mariner.js up --demo-model',
              database: 'embedded PGlite',
              pid: before.server.pid,
              runtime: {
                ...before.runtime,
                note: 'mariner-before routes to its own runtime process (the same model file and flags, checked); the other paths share the runtime above',
              },
            },
          }
        : {}),
      paths: Object.fromEntries(paths.map((name) => [name, PATH_LABELS[name]])),
      request: { url: 'POST /v1/chat/completions', body: requestBody, streaming: 'the same body with stream: true' },
      definitions: {
        ttft: 'request start → the first chunk with non-empty delta.content received, ms',
        chunkGap: 'per stream: (last content chunk − first) / (content chunks − 1), ms; percentiles over streams',
        total: 'request start → the end of the body, ms',
        cpuMsPerRequest:
          'utime + stime from /proc/<pid>/stat during the path’s blocks / its requests; gateway: the node proxy’s process, Portkey’s, or Mariner’s with its children but the runtime' +
          (before ? '; mariner-before’s gateway: its process with its children but its own runtime; runtimeBefore: that runtime' : ''),
        gatewayIdleMsPerSecond: 'the gateway’s CPU while the other paths’ blocks ran, per second of them',
        added: 'path − direct, ms; throughputRatio: path’s requests/s ÷ direct’s',
      },
      phases: phases.map((phase) => ({
        ...phase,
        paths: stats[phase.key],
        addedOverDirect: Object.fromEntries(
          paths.filter((name) => name !== 'direct').map((name) => [name, addedOverDirect(stats[phase.key]![name], stats[phase.key]!.direct)]),
        ),
      })),
      setupSeconds,
      durationSeconds,
    };
    const { summary, markdown } = renderReport(report, phases, paths, stats, options);
    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(path.join(RESULTS_DIR, 'peers.json'), `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(path.join(RESULTS_DIR, 'peers.md'), markdown);
    console.log(`\n${summary}\n`);
    log(`wrote ${path.relative(process.cwd(), RESULTS_DIR)}/peers.{json,md} (setup ${setupSeconds} s, measured run ${durationSeconds} s)`);
  } finally {
    await cleanUp();
  }
}

/** The commit Mariner was built from, and whether the working tree differed from it. */
function gitDescribe(root: string): string {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    const changed = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: root, encoding: 'utf8' }).trim();
    return changed ? `${commit} + uncommitted changes in ${changed.split('\n').length} file(s)` : commit;
  } catch {
    return '(commit unknown: not a git checkout)';
  }
}

/** The terminal summary and bench-results/peers.md: the table in issue 15's shape, then the details. */
function renderReport(
  report: {
    date: string;
    node: string;
    cpu: { model: string; cores: number };
    os: string;
    command: string;
    loadAverage: { before: number[]; after: number[] };
    mariner: { commit: string };
    portkey: { versions: Record<string, string> };
    nodeProxy?: { command: string; pid: number };
    runtime: RuntimeProcess;
    marinerBefore?: { root: string; commit: string; runtime: RuntimeProcess };
    setupSeconds: number;
    durationSeconds: number;
  },
  phases: Phase[],
  paths: PathName[],
  stats: Record<string, Record<PathName, PathStats>>,
  options: Options,
): { summary: string; markdown: string } {
  const f = (x: number) => x.toFixed(Math.abs(x) < 10 ? 2 : 1);
  const signed = (x: number | null) => (x === null ? '' : `${x >= 0 ? '+' : '−'}${f(Math.abs(x))}`);
  const [stream1, plain1, streamC] = [stats['stream-1']!, stats['plain-1']!, stats[phases[2]?.key ?? ''] ?? null];
  const c = phases[2]?.concurrency;
  const gatewayCpu = (name: PathName) =>
    GATEWAY_OF[name] === null ? '—' : [stream1, plain1, ...(streamC ? [streamC] : [])].map((s) => f(s[name].cpuMsPerRequest.gateway!)).join(' / ');
  const mainHead = [
    'path',
    'streaming, 1 in flight: first token p50 / total p50 (ms)',
    'non-streaming, 1 in flight: total p50 / p99 (ms)',
    ...(streamC ? [`streaming, ${c} in flight: streams/s`] : []),
    `gateway CPU per request (ms: stream 1 / plain 1${streamC ? ` / stream ${c}` : ''})`,
  ];
  const before = report.marinerBefore;
  const mainRows = paths.map((name) => {
    const s1 = stream1[name];
    const p1 = plain1[name];
    const added = name === 'direct' ? null : { s: addedOverDirect(s1, stream1.direct), p: addedOverDirect(p1, plain1.direct) };
    return [
      name === 'mariner-before' ? `mariner (before: ${before!.commit})` : (ROW_NAMES[name] ?? name),
      `${f(s1.ttft!.p50)} / ${f(s1.total.p50)}${added ? ` (${signed(added.s.ttftP50)} / ${signed(added.s.totalP50)})` : ''}`,
      `${f(p1.total.p50)} / ${f(p1.total.p99)}${added ? ` (${signed(added.p.totalP50)} / ${signed(added.p.totalP99)})` : ''}`,
      ...(streamC
        ? [
            `${streamC[name].requestsPerSecond.toFixed(1)}${name === 'direct' ? '' : ` (×${addedOverDirect(streamC[name], streamC.direct).throughputRatio.toFixed(2)})`}`,
          ]
        : []),
      gatewayCpu(name),
    ];
  });
  const detailHead = [
    'phase',
    'path',
    'TTFT p50',
    'TTFT p99',
    'gap p50',
    'reads/stream',
    'total p50',
    'total p99',
    'req/s',
    'added TTFT p50',
    'added total p50',
    'added total p99',
  ];
  const detailRows = phases.flatMap((phase) =>
    paths.map((name) => {
      const s = stats[phase.key]![name];
      const added = name === 'direct' ? null : addedOverDirect(s, stats[phase.key]!.direct);
      const opt = (x: number | undefined) => (x === undefined ? '—' : f(x));
      return [
        phase.key,
        name,
        opt(s.ttft?.p50),
        opt(s.ttft?.p99),
        opt(s.chunkGap?.p50),
        s.ttft ? String(s.contentReadsP50) : '—',
        f(s.total.p50),
        f(s.total.p99),
        s.requestsPerSecond.toFixed(1),
        added?.ttftP50 != null ? signed(added.ttftP50) : '—',
        added ? signed(added.totalP50) : '—',
        added ? signed(added.totalP99) : '—',
      ];
    }),
  );
  const cpuHead = [
    'phase',
    'path',
    'gateway CPU ms/req',
    'gateway idle ms/s',
    'gateway net ms/req',
    'runtime CPU ms/req',
    ...(before ? ['mariner-before’s runtime CPU ms/req'] : []),
    'client CPU ms/req',
  ];
  const cpuRows = phases.flatMap((phase) =>
    paths.map((name) => {
      const s = stats[phase.key]![name];
      const opt = (x: number | null) => (x === null ? '—' : f(x));
      return [
        phase.key,
        name,
        opt(s.cpuMsPerRequest.gateway),
        opt(s.gatewayIdleMsPerSecond),
        opt(s.cpuMsPerRequest.gatewayNet),
        f(s.cpuMsPerRequest.runtime),
        ...(before ? [f(s.cpuMsPerRequest.runtimeBefore!)] : []),
        f(s.cpuMsPerRequest.client),
      ];
    }),
  );
  const differing = phases.flatMap((phase) => paths.map((name) => stats[phase.key]![name].differentText)).reduce((a, b) => a + b, 0);
  const chunkRange = [
    ...new Set(
      phases
        .filter((p) => p.stream)
        .flatMap((phase) => paths.map((name) => stats[phase.key]![name].contentChunks))
        .map((r) => (r.min === r.max ? `${r.min}` : `${r.min}-${r.max}`)),
    ),
  ].join(', ');
  const addedNote = 'In brackets: added over direct (ms), and streams/s as a share of direct’s.';
  const runtimeNote = before
    ? `mariner-before routes to its own runtime process (pid ${before.runtime.pid}, port ${before.runtime.port}: identical model and flags), ` +
      `while the other paths share one (pid ${report.runtime.pid}, port ${report.runtime.port}).`
    : null;
  const floorNote = report.nodeProxy
    ? 'node proxy: a bare Node.js http pipe to the runtime, the least CPU any Node.js gateway spends per request; mariner up relays each request twice in its process (agent and control plane), so its floor is about twice that row.'
    : null;
  const summary = [
    textTable(mainHead, mainRows, 1),
    addedNote,
    ...(floorNote ? [floorNote] : []),
    ...(runtimeNote ? [runtimeNote] : []),
    '',
    textTable(detailHead, detailRows, 2),
    '',
    textTable(cpuHead, cpuRows, 2),
  ].join('\n');
  const markdown = [
    `# Peer benchmark: runtime direct,${report.nodeProxy ? ' node proxy (floor),' : ''} Portkey, Mariner${before ? ', Mariner before' : ''}`,
    '',
    `Produced by \`${report.command}\` on ${report.date}.`,
    '',
    `- Node ${report.node}, ${report.cpu.model} (${report.cpu.cores} cores), ${report.os}; load average (1/5/15 min) ${report.loadAverage.before.join(' / ')} before, ${report.loadAverage.after.join(' / ')} after`,
    `- Mariner ${report.mariner.commit}: \`node --enable-source-maps dist/bin/mariner.js up --demo-model\`, embedded PGlite, the admin key`,
    `- Portkey: @portkey-ai/gateway ${report.portkey.versions['@portkey-ai/gateway']} with @hono/node-server ${report.portkey.versions['@hono/node-server']}, \`build/start-server.js --headless\`, ` +
      '`x-portkey-provider: openai`, `x-portkey-custom-host: http://127.0.0.1:<runtime port>/v1`. It holds every stream’s first event 25 ms on purpose (its `readStream`)',
    ...(report.nodeProxy ? [`- **${ROW_NAMES['node-proxy']}**: ${FLOOR_NOTE} Pid ${report.nodeProxy.pid}: \`${report.nodeProxy.command}\``] : []),
    ...(before
      ? [
          `- Mariner before: ${before.commit} (${before.root}), started the same way with its own data dir and port`,
          `- One runtime behind every other path: the demo model’s llamaCppServer that Mariner’s agent started (pid ${report.runtime.pid}, port ${report.runtime.port}). ` +
            `mariner-before routes to its own runtime process, the one its agent started (pid ${before.runtime.pid}, port ${before.runtime.port}): ` +
            'identical model and flags (its /proc/<pid>/cmdline equals the other’s but for the checkout and data dir; the same model file, SHA-256)',
        ]
      : [
          `- One runtime behind every path: the demo model’s llamaCppServer that Mariner’s agent started (pid ${report.runtime.pid}, port ${report.runtime.port})`,
        ]),
    `- Request: \`POST /v1/chat/completions\`, max_tokens ${options.maxTokens}, temperature 0, seed ${SEED}; content chunks per stream: ${chunkRange}; answers whose text differs from their phase’s first: ${differing}`,
    `- 1 in flight: ${options.requests} requests per path after ${options.warmup} warm-up, blocks of ${options.block}; ` +
      `${options.concurrency.join(' and ')} in flight: ${options.concurrentRequests} streams per path after one block of C, blocks of ${options.concurrentBlock}; ` +
      `paths alternate, the first rotating each round. Setup ${report.setupSeconds} s, measured run ${report.durationSeconds} s`,
    '- Client, gateways and runtime share this machine’s cores',
    '',
    ...markdownTable(mainHead, mainRows, 1),
    '',
    addedNote,
    '',
    'Every phase (ms; gap: a stream’s mean time between content chunks; reads/stream: the body reads that brought its content chunks, p50, ' +
      '1 when they come in one burst; req/s over the path’s blocks):',
    '',
    ...markdownTable(detailHead, detailRows, 2),
    '',
    'CPU per request (utime + stime from /proc during the path’s blocks ÷ its requests; gateway: the node proxy’s process, Portkey’s, or Mariner’s with its ' +
      'children but the runtime; idle: the gateway’s CPU per second while the other paths ran; net: less that idle rate' +
      (before ? '; mariner-before: its process and children but its own runtime, whose CPU is its own column; runtime: the one the other paths share' : '') +
      '):',
    '',
    ...markdownTable(cpuHead, cpuRows, 2),
    '',
  ].join('\n');
  return { summary, markdown };
}

runBench(main);
