/**
 * Peer benchmark (`npm run bench:peers`, options after `--`): what a gateway in front of an
 * OpenAI-compatible model runtime costs, for Mariner and for a peer, Portkey's open-source AI gateway,
 * against the runtime called directly (issue 15).
 *
 * One model runtime process serves every path: the node-llama-cpp runtime (agent/runtimes/
 * llamaCppServer.ts) that Mariner's embedded agent starts for the demo model. A chat completion
 * (`POST /v1/chat/completions`, OpenAI API) with the same body goes
 *   - direct:  to that runtime on loopback (its port read from /proc: it listens on `--port 0`);
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
 * CPU per request: utime + stime (/proc/<pid>/stat) of each gateway (Portkey's process; Mariner's and
 * its children but the runtime), of the runtime and of this client, before and after every block, summed
 * over the path's blocks and divided by its requests. A gateway also burns CPU when idle (Mariner's
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
 *   --mariner-root DIR       measure the Mariner of another checkout (built there; its node_modules
 *                            must be installed), e.g. an older commit for a before/after on one machine
 *
 * Everything runs on one machine: the client, both gateways and the runtime share its cores. Linux only.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
/** The version issue 15 names, pinned exactly in package.json; another one makes other figures. */
const PORTKEY_VERSION = '1.15.2';
/** `mariner up --demo-model`'s model (bin/demoModel.ts): the tiny random GGUF of the tests, on the CPU. */
const MODEL_ID = 'mariner-demo';
const PROMPT = 'Tell me a story about a lighthouse.';
const SEED = 42;
const START_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 30_000;

type PathName = 'direct' | 'portkey' | 'mariner';
const PATHS: PathName[] = ['direct', 'portkey', 'mariner'];
const PATH_LABELS: Record<PathName, string> = {
  direct: 'direct: the runtime on loopback',
  portkey: `Portkey AI gateway ${PORTKEY_VERSION} (node server) → the runtime`,
  mariner: 'Mariner (mariner up: REST → gateway → inference → agent tunnel → agent) → the runtime',
};
/** The process whose CPU each path adds; direct has none. */
type ProcessName = 'runtime' | 'portkey' | 'mariner' | 'client';
const GATEWAY_OF: Record<PathName, ProcessName | null> = { direct: null, portkey: 'portkey', mariner: 'mariner' };

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
  /** The checkout whose Mariner is measured (default: this one), e.g. an older commit for a before/after. */
  marinerRoot: string;
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
  'mariner-root': { type: 'string' },
} as const;

/** Defaults in one place: the full run's, and --quick's where it differs. */
function parseOptions(argv: string[]): Options {
  const values = parseBenchArgs(
    argv,
    CLI_OPTIONS,
    '--requests N --concurrent-requests N --concurrency C,... --warmup W --block B --concurrent-block B --max-tokens T --timeout-s S --quick --mariner-root DIR',
  );
  const quick = values.quick;
  const pick = (name: keyof typeof values, full: number, short: number, min: number) =>
    intOption(name, (values[name] as string | undefined) ?? String(quick ? short : full), min);
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
    marinerRoot: path.resolve(values['mariner-root'] ?? ROOT),
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
async function startMariner(dataDir: string, root: string): Promise<{ server: ChildServer; url: string; adminKey: string }> {
  execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  const banner = /Admin API key \(shown once[^\n]*\n\s*(sk-[A-Za-z0-9_-]+)\n[\s\S]*Demo model:/;
  const server = await startChild(
    'mariner',
    ['--enable-source-maps', 'dist/bin/mariner.js', 'up', '--demo-model'],
    userEnv({ MARINER_DATA_DIR: dataDir, MARINER_PORT: '0', MARINER_LOG_LEVEL: 'warn' }),
    (stdout) => banner.test(stdout),
    root,
  );
  const text = server.output();
  const url = /OpenAI API:\s+(http:\/\/127\.0\.0\.1:\d+)\/v1/.exec(text)?.[1];
  const adminKey = banner.exec(text)?.[1];
  if (!url || !adminKey) throw new BenchAbort(`no URL or admin key in mariner's banner:\n${text}`);
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

const noCpu = (): Record<ProcessName, number> => ({ runtime: 0, portkey: 0, mariner: 0, client: 0 });

/** CPU so far, ms, of the runtime, Portkey, Mariner with its children but the runtime, and this process. */
function cpuSnapshot(pids: { runtime: number; portkey: number; mariner: number }): Record<ProcessName, number> {
  const gone = (name: string) => {
    throw new BenchAbort(`the ${name} process is gone`);
  };
  const marinerTree = [pids.mariner, ...descendantPids(pids.mariner)].filter((pid) => pid !== pids.runtime);
  const client = process.cpuUsage();
  return {
    runtime: processCpuMs(pids.runtime) ?? gone('runtime'),
    portkey: processCpuMs(pids.portkey) ?? gone('Portkey'),
    // A child of Mariner's that exits between two snapshots takes its CPU with it (into Mariner's cutime).
    mariner: marinerTree.reduce((sum, pid) => sum + (processCpuMs(pid) ?? 0), 0),
    client: (client.user + client.system) / 1000,
  };
}

/** Runs every phase; returns the records of its measured blocks, by phase key and path. */
async function measure(
  phases: Phase[],
  targets: Record<PathName, Target>,
  bodies: { stream: string; plain: string },
  pids: { runtime: number; portkey: number; mariner: number },
  timeoutMs: number,
  log: (line: string) => void,
): Promise<Record<string, Record<PathName, PathRecord>>> {
  const records: Record<string, Record<PathName, PathRecord>> = {};
  for (const phase of phases) {
    const record = Object.fromEntries(
      PATHS.map((name): [PathName, PathRecord] => [name, { samples: [], wallNs: 0n, cpuMs: noCpu(), differentText: 0 }]),
    ) as Record<PathName, PathRecord>;
    records[phase.key] = record;
    /** The first answer's text in this phase: greedy decoding of one prompt on one runtime gives every other the same. */
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
      const done: Record<PathName, number> = { direct: 0, portkey: 0, mariner: 0 };
      for (let round = 0; round < rounds; round++) {
        for (let i = 0; i < PATHS.length; i++) {
          const name = PATHS[(round + i) % PATHS.length]!;
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
    runtime: number;
    client: number;
  };
  /** The gateway's CPU while the other paths' blocks ran, ms per second: its cost when it serves nothing. */
  gatewayIdleMsPerSecond: number | null;
}

function pathStats(records: Record<PathName, PathRecord>, name: PathName): PathStats {
  const { samples, wallNs, cpuMs, differentText } = records[name];
  const percentiles = (ns: bigint[]): Percentiles => {
    const { requestsPerSecond: _rate, ...rest } = latencyStats(ns, wallNs);
    return rest;
  };
  const gateway = GATEWAY_OF[name];
  const n = samples.length;
  let idle: number | null = null;
  if (gateway) {
    const others = PATHS.filter((other) => other !== name);
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

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const options = parseOptions(argv);
  const command = `npm run bench:peers${argv.length ? ` -- ${argv.join(' ')}` : ''}`;
  const log = (line: string) => process.stderr.write(`${line}\n`);
  if (process.platform !== 'linux') throw new UsageError('this benchmark reads processes from /proc: Linux only');

  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'mariner-bench-peers-'));
  const servers: ChildServer[] = [];
  let closing: Promise<void> | undefined;
  const cleanUp = () =>
    (closing ??= (async () => {
      // Ctrl-C for Mariner (it drains, then closes its runtime); Portkey has no drain.
      await Promise.all(servers.map((server) => server.stop(server.name === 'mariner' ? 'SIGINT' : 'SIGTERM')));
      rmSync(dataDir, { recursive: true, force: true });
    })());
  const onSignal = (signal: NodeJS.Signals) => {
    log(`\n${signal}: stopping Portkey and Mariner…`);
    void cleanUp().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    const loadBefore = os.loadavg();
    const setupStarted = process.hrtime.bigint();
    log('building dist/ and starting mariner up --demo-model…');
    const mariner = await startMariner(dataDir, options.marinerRoot);
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
    log(`runtime: pid ${runtime.pid}, port ${runtime.port}; starting Portkey…`);
    const portkey = await startPortkey();
    servers.push(portkey.server);
    const targets: Record<PathName, Target> = {
      direct: { url: `http://127.0.0.1:${runtime.port}/v1/chat/completions`, headers: json },
      portkey: {
        url: `${portkey.url}/v1/chat/completions`,
        // Portkey forwards the bearer as the provider's API key; the runtime asks for none.
        headers: { ...json, authorization: 'Bearer unused', 'x-portkey-provider': 'openai', 'x-portkey-custom-host': `http://127.0.0.1:${runtime.port}/v1` },
      },
      mariner: marinerTarget,
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
    const pids = { runtime: runtime.pid, portkey: portkey.server.pid, mariner: mariner.server.pid };
    const measuredStarted = process.hrtime.bigint();
    const records = await measure(phases, targets, bodies, pids, options.timeoutSeconds * 1000, log);
    const durationSeconds = Math.round(Number(process.hrtime.bigint() - measuredStarted) / 1e7) / 100;

    // The same runtime served the whole run: no crash and restart, no second replica Mariner could have used.
    const runtimesAfter = runtimePids(mariner.server.pid);
    if (runtimesAfter.length !== 1 || runtimesAfter[0] !== runtime.pid) {
      throw new BenchAbort(`Mariner's runtime processes changed during the run: ${runtime.pid} before, ${JSON.stringify(runtimesAfter)} after`);
    }

    const stats = Object.fromEntries(
      phases.map((phase) => [phase.key, Object.fromEntries(PATHS.map((name) => [name, pathStats(records[phase.key]!, name)]))]),
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
      runtime: { ...runtime, model: 'mariner up --demo-model: the tiny random GGUF of agent/runtimes/tinyGguf.ts (context 4096), node-llama-cpp on the CPU' },
      paths: PATH_LABELS,
      request: { url: 'POST /v1/chat/completions', body: requestBody, streaming: 'the same body with stream: true' },
      definitions: {
        ttft: 'request start → the first chunk with non-empty delta.content received, ms',
        chunkGap: 'per stream: (last content chunk − first) / (content chunks − 1), ms; percentiles over streams',
        total: 'request start → the end of the body, ms',
        cpuMsPerRequest:
          'utime + stime from /proc/<pid>/stat during the path’s blocks / its requests; gateway: Portkey’s process, or Mariner’s with its children but the runtime',
        gatewayIdleMsPerSecond: 'the gateway’s CPU while the other paths’ blocks ran, per second of them',
        added: 'path − direct, ms; throughputRatio: path’s requests/s ÷ direct’s',
      },
      phases: phases.map((phase) => ({
        ...phase,
        paths: stats[phase.key],
        addedOverDirect: {
          portkey: addedOverDirect(stats[phase.key]!.portkey, stats[phase.key]!.direct),
          mariner: addedOverDirect(stats[phase.key]!.mariner, stats[phase.key]!.direct),
        },
      })),
      setupSeconds,
      durationSeconds,
    };
    const { summary, markdown } = renderReport(report, phases, stats, options);
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
    runtime: RuntimeProcess;
    setupSeconds: number;
    durationSeconds: number;
  },
  phases: Phase[],
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
  const mainRows = PATHS.map((name) => {
    const s1 = stream1[name];
    const p1 = plain1[name];
    const added = name === 'direct' ? null : { s: addedOverDirect(s1, stream1.direct), p: addedOverDirect(p1, plain1.direct) };
    return [
      name,
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
    PATHS.map((name) => {
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
  const cpuHead = ['phase', 'path', 'gateway CPU ms/req', 'gateway idle ms/s', 'gateway net ms/req', 'runtime CPU ms/req', 'client CPU ms/req'];
  const cpuRows = phases.flatMap((phase) =>
    PATHS.map((name) => {
      const s = stats[phase.key]![name];
      const opt = (x: number | null) => (x === null ? '—' : f(x));
      return [
        phase.key,
        name,
        opt(s.cpuMsPerRequest.gateway),
        opt(s.gatewayIdleMsPerSecond),
        opt(s.cpuMsPerRequest.gatewayNet),
        f(s.cpuMsPerRequest.runtime),
        f(s.cpuMsPerRequest.client),
      ];
    }),
  );
  const differing = phases.flatMap((phase) => PATHS.map((name) => stats[phase.key]![name].differentText)).reduce((a, b) => a + b, 0);
  const chunkRange = [
    ...new Set(
      phases
        .filter((p) => p.stream)
        .flatMap((phase) => PATHS.map((name) => stats[phase.key]![name].contentChunks))
        .map((r) => (r.min === r.max ? `${r.min}` : `${r.min}-${r.max}`)),
    ),
  ].join(', ');
  const addedNote = 'In brackets: added over direct (ms), and streams/s as a share of direct’s.';
  const summary = [textTable(mainHead, mainRows, 1), addedNote, '', textTable(detailHead, detailRows, 2), '', textTable(cpuHead, cpuRows, 2)].join('\n');
  const markdown = [
    '# Peer benchmark: runtime direct, Portkey, Mariner',
    '',
    `Produced by \`${report.command}\` on ${report.date}.`,
    '',
    `- Node ${report.node}, ${report.cpu.model} (${report.cpu.cores} cores), ${report.os}; load average (1/5/15 min) ${report.loadAverage.before.join(' / ')} before, ${report.loadAverage.after.join(' / ')} after`,
    `- Mariner ${report.mariner.commit}: \`node --enable-source-maps dist/bin/mariner.js up --demo-model\`, embedded PGlite, the admin key`,
    `- Portkey: @portkey-ai/gateway ${report.portkey.versions['@portkey-ai/gateway']} with @hono/node-server ${report.portkey.versions['@hono/node-server']}, \`build/start-server.js --headless\`, ` +
      '`x-portkey-provider: openai`, `x-portkey-custom-host: http://127.0.0.1:<runtime port>/v1`. It holds every stream’s first event 25 ms on purpose (its `readStream`)',
    `- One runtime behind every path: the demo model’s llamaCppServer that Mariner’s agent started (pid ${report.runtime.pid}, port ${report.runtime.port})`,
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
    'CPU per request (utime + stime from /proc during the path’s blocks ÷ its requests; gateway: Portkey’s process, or Mariner’s with its ' +
      'children but the runtime; idle: the gateway’s CPU per second while the other paths ran; net: less that idle rate):',
    '',
    ...markdownTable(cpuHead, cpuRows, 2),
    '',
  ].join('\n');
  return { summary, markdown };
}

runBench(main);
