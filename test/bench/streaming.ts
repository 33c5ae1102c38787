/**
 * Streaming inference benchmark (`npm run bench:streaming`, options after `--`; `npm run bench` runs it too).
 *
 * A streamed chat completion (`POST /v1/chat/completions`, `stream: true`, OpenAI API: streaming) sent
 *   - platform: to the platform's REST API with the admin key: REST → gateway (its inference data plane,
 *               lib/inferencePlane.ts: authentication and policy, no GraphQL on the way) → inference
 *               subgraph → the cluster's agent tunnel → the agent → the runtime (a node-llama-cpp process
 *               the local executor started), whose bytes come back as they are;
 *   - direct:   straight to a second runtime process this benchmark starts with its own
 *               `LocalRuntimeManager`, on the same GGUF file (the platform runtime's cached copy) with
 *               the same runtime flags (both checked in /proc: `--parallel`, `--threads`, `--context-size`).
 * Both paths use the same client code (fetch, the SSE parsed as it arrives) and the same request body
 * (`max_tokens` fixed, `temperature: 0`, a fixed `seed`). Per stream: TTFT (request start → the first
 * chunk with non-empty `delta.content` received), the per-chunk gap (mean time between content chunks
 * after the first), the total time (→ the end of the body), the number of content chunks and of the body
 * reads that brought them; per path, the CPU per stream of this process and of the runtime, and this
 * process's event-loop lag (what explains chunks arriving in bursts when it is saturated). Two phases,
 * each with the paths in alternating blocks (the first path rotating each round), after a warm-up:
 *   - single:     one stream in flight;
 *   - concurrent: --concurrency (64) streams in flight (closed loop: each one ends, the next starts).
 * Every stream is checked (HTTP 200, text/event-stream, no error event, content chunks > 0, ends with
 * `data: [DONE]` and nothing after it); a failure, or no byte for --stall-s seconds, aborts the run with
 * exit status 1 and says which path, phase and how many streams were in flight.
 * Writes bench-results/streaming.{json,md}.
 *
 *   --requests N             single phase: measured streams per path (default 500)
 *   --concurrent-requests N  concurrent phase: measured streams per path (default 768)
 *   --concurrency C          concurrent phase: streams in flight per path (default 64)
 *   --warmup W               single-phase warm-up streams per path (default 20; the concurrent phase warms
 *                            up with C streams per path at C in flight)
 *   --block B                single-phase blocks of B streams (default 25)
 *   --concurrent-block B     concurrent-phase blocks of B streams (default 256)
 *   --max-tokens T           max_tokens of every request (default 32)
 *   --stall-s S              abort when no stream receives a byte for S seconds (default 30)
 *   --embedded               PGlite instead of a fresh PostgreSQL database
 *
 * The client, the control plane and the agent share this Node process; the two runtimes are child
 * processes; all on one machine. Linux only (/proc).
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startAgent, type Agent } from '../../agent/index.js';
import { createLocalExecutor } from '../../agent/localExecutor.js';
import { LocalRuntimeManager } from '../../agent/runtimes/index.js';
import { silentLogger } from '../../lib/logging.js';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { writeTinyGguf } from '../support/tinyGguf.js';
import {
  BenchAbort,
  benchEnvironment,
  intOption,
  latencyStats,
  type LatencyStats,
  parseBenchArgs,
  runBench,
  streamChatCompletion,
  type StreamedCompletion,
  UsageError,
} from './support.js';

const RESULTS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench-results');
const MODEL_ID = 'bench-tiny-chat';
const PROMPT = 'Tell me a story about a lighthouse.';
const SEED = 42;
/** llamaCppServer.ts generates this many sequences at once when `--parallel` is not given. */
const RUNTIME_DEFAULT_PARALLEL = 2;
/** The runtime flags that decide how requests share the CPU and queue; both runtimes must agree. */
const RUNTIME_FLAGS = ['--parallel', '--threads', '--context-size'] as const;
/** Closing takes a few seconds (the runtimes drain); longer means something hangs, which the report must say. */
const CLOSE_TIMEOUT_MS = 30_000;

type PathName = 'platform' | 'direct';
const PATHS: PathName[] = ['platform', 'direct'];
const PATH_LABELS: Record<PathName, string> = {
  platform: 'platform (REST → gateway → inference → tunnel → agent → runtime)',
  direct: 'direct (the runtime on loopback)',
};
type Phase = 'single' | 'concurrent';
const PHASES: Phase[] = ['single', 'concurrent'];

interface Options {
  requests: number;
  concurrentRequests: number;
  concurrency: number;
  warmup: number;
  block: number;
  concurrentBlock: number;
  maxTokens: number;
  stallSeconds: number;
  embedded: boolean;
}

const CLI_OPTIONS = {
  requests: { type: 'string', default: '500' },
  'concurrent-requests': { type: 'string', default: '768' },
  concurrency: { type: 'string', default: '64' },
  warmup: { type: 'string', default: '20' },
  block: { type: 'string', default: '25' },
  'concurrent-block': { type: 'string', default: '256' },
  'max-tokens': { type: 'string', default: '32' },
  'stall-s': { type: 'string', default: '30' },
  embedded: { type: 'boolean', default: false },
} as const;

function parseOptions(argv: string[]): Options {
  const values = parseBenchArgs(
    argv,
    CLI_OPTIONS,
    '--requests N --concurrent-requests N --concurrency C --warmup W --block B --concurrent-block B --max-tokens T --stall-s S --embedded',
  );
  return {
    requests: intOption('requests', values.requests, 1),
    concurrentRequests: intOption('concurrent-requests', values['concurrent-requests'], 1),
    concurrency: intOption('concurrency', values.concurrency, 1),
    warmup: intOption('warmup', values.warmup, 0),
    block: intOption('block', values.block, 1),
    concurrentBlock: intOption('concurrent-block', values['concurrent-block'], 1),
    // At least 2: one content chunk has no gap to measure.
    maxTokens: intOption('max-tokens', values['max-tokens'], 2),
    stallSeconds: intOption('stall-s', values['stall-s'], 1),
    embedded: values.embedded,
  };
}

// ---------------------------------------------------------------------------------------------
// The client: one streamed chat completion, the SSE read as it arrives. Both paths use it unchanged.

interface Target {
  url: string;
  headers: Record<string, string>;
}

/** One streamed chat completion, read as it arrives (support.ts, shared with bench:peers). */
type StreamReply = StreamedCompletion;

function streamChat(target: Target, body: string, signal: AbortSignal, onBytes: (n: number) => void): Promise<StreamReply> {
  return streamChatCompletion(target.url, target.headers, body, signal, onBytes);
}

/** Why a reply does not count, or null when it is a good stream. */
function problemOf(reply: StreamReply): string | null {
  if (reply.problem) return reply.problem;
  if (!reply.contentType?.startsWith('text/event-stream')) return `content-type ${reply.contentType}, not text/event-stream`;
  if (reply.contentAtNs.length === 0) return 'no content chunk';
  if (!reply.sawDone) return 'the stream ended without data: [DONE]';
  return null;
}

// ---------------------------------------------------------------------------------------------
// Statistics

interface Sample {
  ttftNs: bigint;
  /** Mean gap between content chunks after the first; null with one content chunk. */
  gapNs: bigint | null;
  totalNs: bigint;
  chunks: number;
  /** Reads of the body that brought content chunks: as many as the chunks when they stream, 1 when they come in one burst. */
  reads: number;
}

interface PathStats {
  streams: number;
  ttft: LatencyStats;
  /** The per-stream mean gap between content chunks (ms); its requestsPerSecond is meaningless, left out. */
  chunkGap: Omit<LatencyStats, 'requestsPerSecond'>;
  total: LatencyStats;
  contentChunks: { min: number; max: number; mean: number };
  /** Per stream, the body reads that brought its content chunks (Sample.reads): p50, min, max over streams. */
  contentReads: { p50: number; min: number; max: number };
  /** Content chunks per second over the blocks' wall time (all streams of the path together). */
  chunksPerSecond: number;
  /** Streams whose text differs from the first one's (same body, greedy sampling: expected 0). */
  differentText: number;
  /**
   * CPU time per stream, ms: this Node process (the client, and on the platform path the control plane
   * and the agent too) and the runtime process that served the path.
   */
  cpuMsPerStream: { node: number; runtime: number };
  /** This process's event-loop lag during the path's blocks (how late a 10 ms timer fires), ms. */
  eventLoopLagMs: { p50: number; p99: number; max: number };
}

/** What one path used while its blocks ran. */
interface Usage {
  wallNs: bigint;
  nodeCpuUs: number;
  runtimeCpuMs: number;
  /** Event-loop lag samples, ms. */
  lagSamplesMs: number[];
}

/** Nearest-rank percentile (as latencyStats) of numbers sorted ascending; 0 for none. */
const nearestRank = (sorted: number[], q: number) => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] ?? 0;
const round2 = (x: number) => Math.round(x * 100) / 100;

function pathStats(samples: Sample[], usage: Usage, differentText: number): PathStats {
  const { wallNs } = usage;
  const chunks = samples.map((s) => s.chunks);
  const totalChunks = chunks.reduce((a, b) => a + b, 0);
  // Every stream has ≥ 2 content chunks with the tiny model; a gap-less run still gets (zero) figures.
  const gaps = samples.flatMap((s) => (s.gapNs === null ? [] : [s.gapNs]));
  const { requestsPerSecond: _notARate, ...chunkGap } = latencyStats(gaps.length ? gaps : [0n], wallNs);
  const reads = samples.map((s) => s.reads).sort((a, b) => a - b);
  const lag = [...usage.lagSamplesMs].sort((a, b) => a - b);
  return {
    streams: samples.length,
    ttft: latencyStats(
      samples.map((s) => s.ttftNs),
      wallNs,
    ),
    chunkGap,
    total: latencyStats(
      samples.map((s) => s.totalNs),
      wallNs,
    ),
    contentChunks: { min: Math.min(...chunks), max: Math.max(...chunks), mean: Math.round((totalChunks / chunks.length) * 10) / 10 },
    contentReads: { p50: nearestRank(reads, 0.5), min: reads[0]!, max: reads[reads.length - 1]! },
    chunksPerSecond: Math.round((totalChunks / (Number(wallNs) / 1e9)) * 10) / 10,
    differentText,
    cpuMsPerStream: { node: round2(usage.nodeCpuUs / 1000 / samples.length), runtime: round2(usage.runtimeCpuMs / samples.length) },
    eventLoopLagMs: { p50: round2(nearestRank(lag, 0.5)), p99: round2(nearestRank(lag, 0.99)), max: round2(nearestRank(lag, 1)) },
  };
}

interface PhaseRatios {
  ttftP50: number;
  ttftP99: number;
  chunkGapP50: number;
  chunkGapP99: number;
  totalP50: number;
  streamsPerSecond: number;
  addedTtftP50Ms: number;
  addedTtftP99Ms: number;
  addedChunkGapP50Ms: number;
  addedChunkGapP99Ms: number;
}

function phaseRatios(platform: PathStats, direct: PathStats): PhaseRatios {
  const r2 = round2;
  const ms3 = (x: number) => Math.round(x * 1000) / 1000;
  return {
    ttftP50: r2(platform.ttft.p50 / direct.ttft.p50),
    ttftP99: r2(platform.ttft.p99 / direct.ttft.p99),
    chunkGapP50: r2(platform.chunkGap.p50 / direct.chunkGap.p50),
    chunkGapP99: r2(platform.chunkGap.p99 / direct.chunkGap.p99),
    totalP50: r2(platform.total.p50 / direct.total.p50),
    streamsPerSecond: r2(platform.total.requestsPerSecond / direct.total.requestsPerSecond),
    addedTtftP50Ms: ms3(platform.ttft.p50 - direct.ttft.p50),
    addedTtftP99Ms: ms3(platform.ttft.p99 - direct.ttft.p99),
    addedChunkGapP50Ms: ms3(platform.chunkGap.p50 - direct.chunkGap.p50),
    addedChunkGapP99Ms: ms3(platform.chunkGap.p99 - direct.chunkGap.p99),
  };
}

// ---------------------------------------------------------------------------------------------
// The runtimes' processes (Linux /proc): which flags each was started with.

/** The llamaCppServer child processes of this process. */
function runtimePids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Fields after the command name (which may hold spaces and parentheses): state, ppid, …
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid && readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes('llamaCppServer')) pids.push(Number(entry));
    } catch {
      /* the process just exited */
    }
  }
  return pids;
}

interface RuntimeProcess {
  pid: number;
  modelPath: string;
  /** RUNTIME_FLAGS as given, or 'default' when absent. */
  flags: Record<string, string>;
}

const LAG_INTERVAL_MS = 10;

/** Event-loop lag: how late a LAG_INTERVAL_MS timer fires, recorded into the array given to `record` (none: not recorded). */
function startLagSampler() {
  let into: number[] | null = null;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    into?.push(Math.max(0, now - last - LAG_INTERVAL_MS));
    last = now;
  }, LAG_INTERVAL_MS);
  timer.unref();
  return {
    record(samples: number[] | null) {
      into = samples;
    },
    stop: () => clearInterval(timer),
  };
}

/** CPU time (user + system) of a process so far, ms: /proc/<pid>/stat utime and stime, in ticks of 1/100 s. */
function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of proc(5), counted from the state (field 3) here.
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

function runtimeProcess(pid: number): RuntimeProcess {
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  const value = (flag: string) => {
    const at = argv.indexOf(flag);
    return at >= 0 ? argv[at + 1] : undefined;
  };
  const modelPath = value('--model');
  if (!modelPath) throw new BenchAbort(`runtime process ${pid} has no --model: ${argv.join(' ')}`);
  return { pid, modelPath, flags: Object.fromEntries(RUNTIME_FLAGS.map((flag) => [flag.slice(2), value(flag) ?? 'default'])) };
}

// ---------------------------------------------------------------------------------------------

function withTimeout(work: Promise<void>, ms: number, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    work.finally(() => clearTimeout(timer)),
    new Promise<void>((_, reject) => (timer = setTimeout(() => reject(new BenchAbort(`${what} did not finish within ${ms / 1000} s`)), ms))),
  ]);
}

const ACQUIRE = 'mutation { acquireModelLoad { modelId source } }';
const REPORT = 'mutation($input: ReportModelLoadingInput!) { reportModelLoading(input: $input) { loadingStatus } }';

/**
 * The model as test/inference.test.ts serves it: a File uploaded through REST, a base model from it,
 * loaded through the worker API (acquire, report), activated; the agent's reconciler then starts its
 * runtime (two passes: the first may be the one already running since the agent connected).
 */
async function serveModel(t: TestPlatform, agent: Agent, registrationKey: string, gguf: Buffer): Promise<void> {
  const form = new FormData();
  form.append('purpose', 'user_data');
  form.append('file', new Blob([new Uint8Array(gguf)]), `${MODEL_ID}.gguf`);
  const upload = await fetch(`${t.url}/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${t.adminKey}` }, body: form });
  const file = (await upload.json()) as { id?: string };
  if (upload.status !== 200 || !file.id) throw new BenchAbort(`uploading the GGUF answered HTTP ${upload.status}: ${JSON.stringify(file).slice(0, 300)}`);
  await t.gqlOk('mutation($input: CreateBaseModelInput!) { createBaseModel(input: $input) { id } }', {
    input: { id: MODEL_ID, sourceRepository: 'FILE', source: file.id },
  });
  const worker = { token: registrationKey };
  const task = (await t.gqlOk<{ acquireModelLoad: { modelId: string; source: string } | null }>(ACQUIRE, {}, worker)).acquireModelLoad;
  if (task?.modelId !== MODEL_ID) throw new BenchAbort(`the worker API handed out ${JSON.stringify(task)} instead of ${MODEL_ID}`);
  await t.gqlOk(REPORT, { input: { id: MODEL_ID, status: 'SUCCEEDED', objectPath: task.source, formats: ['GGUF'] } }, worker);
  await t.gqlOk('mutation($id: ID!) { activateModel(id: $id) { activationStatus } }', { id: MODEL_ID });
  await agent.reconcileRuntimes();
  await agent.reconcileRuntimes();
  const { inferenceStatus } = await t.gqlOk<{ inferenceStatus: { readyModelIds: string[]; runtimes: unknown[] } }>(
    '{ inferenceStatus { readyModelIds runtimes { modelId readyReplicas statusMessage } } }',
  );
  if (!inferenceStatus.readyModelIds.includes(MODEL_ID)) throw new BenchAbort(`the platform's runtime is not ready: ${JSON.stringify(inferenceStatus)}`);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const options = parseOptions(argv);
  const command = `npm run bench:streaming${argv.length ? ` -- ${argv.join(' ')}` : ''}`;
  const log = (line: string) => process.stderr.write(`${line}\n`);
  if (process.platform !== 'linux') throw new UsageError('this benchmark reads the runtimes’ command lines from /proc: Linux only');

  log(`starting the platform (${options.embedded ? 'PGlite' : 'PostgreSQL'}), an agent with the local executor and its runtime, and the direct runtime…`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mariner-bench-streaming-'));
  let t: TestPlatform | undefined;
  let agent: Agent | undefined;
  const directRuntimes = new LocalRuntimeManager({ logger: silentLogger() });
  // Every stream still in flight is aborted when the run stops (a failure, a stall, a signal). One
  // controller per stream: fetch leaves its listener on a shared signal until garbage collection.
  const inFlight = new Set<AbortController>();
  let stopped = false;
  const stopStreams = (reason: unknown) => {
    stopped = true;
    for (const controller of inFlight) controller.abort(reason);
  };
  let closing: Promise<void> | undefined;
  const cleanUp = () =>
    (closing ??= withTimeout(
      (async () => {
        stopStreams(new BenchAbort('the benchmark stopped'));
        await directRuntimes.close();
        await agent?.close();
        await t?.close();
        rmSync(dir, { recursive: true, force: true });
      })(),
      CLOSE_TIMEOUT_MS,
      'closing the runtimes, the agent and the platform',
    ));
  const onSignal = (signal: NodeJS.Signals) => {
    log(`\n${signal}: closing the runtimes, the agent and the platform…`);
    void cleanUp().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    const setupStarted = process.hrtime.bigint();
    const ggufPath = path.join(dir, 'tiny.gguf');
    writeTinyGguf(ggufPath);
    t = await startTestPlatform({ embedded: options.embedded });
    const platform = t;
    const { registerCluster } = await platform.gqlOk<{ registerCluster: { registrationKey: string } }>(
      'mutation { registerCluster(input: { name: "bench-streaming" }) { registrationKey } }',
    );
    agent = await startAgent({
      controlPlaneUrl: platform.url,
      registrationKey: registerCluster.registrationKey,
      executor: await createLocalExecutor(silentLogger(), { objectStore: platform.platform.objectStore, cacheDir: path.join(dir, 'cache') }),
      logger: silentLogger(),
    });
    await agent.whenConnected();
    await serveModel(platform, agent, registerCluster.registrationKey, readFileSync(ggufPath));

    // The platform's runtime is this process's only llamaCppServer child so far; the direct one runs
    // the same file (its cached copy) with the same flags (the local executor passes none: defaults).
    const [platformPid, ...morePids] = runtimePids();
    if (platformPid === undefined || morePids.length > 0)
      throw new BenchAbort(`expected one runtime process of the agent, found ${JSON.stringify(runtimePids())}`);
    const platformRuntime = runtimeProcess(platformPid);
    const direct = await directRuntimes.ensure(MODEL_ID, platformRuntime.modelPath);
    const directRuntime = runtimeProcess(direct.pid);
    if (JSON.stringify(directRuntime.flags) !== JSON.stringify(platformRuntime.flags) || directRuntime.modelPath !== platformRuntime.modelPath) {
      throw new BenchAbort(`the runtimes differ: platform ${JSON.stringify(platformRuntime)}, direct ${JSON.stringify(directRuntime)}`);
    }
    const parallel = platformRuntime.flags['parallel'] === 'default' ? RUNTIME_DEFAULT_PARALLEL : Number(platformRuntime.flags['parallel']);
    const setupSeconds = Math.round(Number(process.hrtime.bigint() - setupStarted) / 1e7) / 100;

    const targets: Record<PathName, Target> = {
      platform: { url: `${platform.url}/v1/chat/completions`, headers: { authorization: `Bearer ${platform.adminKey}`, 'content-type': 'application/json' } },
      direct: { url: `${direct.url}/v1/chat/completions`, headers: { 'content-type': 'application/json' } },
    };
    const requestBody = {
      model: MODEL_ID,
      messages: [{ role: 'user', content: PROMPT }],
      max_tokens: options.maxTokens,
      temperature: 0,
      seed: SEED,
      stream: true,
    };
    const body = JSON.stringify(requestBody);

    // Bytes received (the stall watchdog) and streams open, per path.
    let received = 0;
    const open: Record<PathName, number> = { platform: 0, direct: 0 };
    let referenceText: string | undefined;
    const samples: Record<Phase, Record<PathName, Sample[]>> = { single: { platform: [], direct: [] }, concurrent: { platform: [], direct: [] } };
    const runtimePid: Record<PathName, number> = { platform: platformPid, direct: direct.pid };
    const newUsage = (): Usage => ({ wallNs: 0n, nodeCpuUs: 0, runtimeCpuMs: 0, lagSamplesMs: [] });
    const lagSampler = startLagSampler();
    const usage: Record<Phase, Record<PathName, Usage>> = {
      single: { platform: newUsage(), direct: newUsage() },
      concurrent: { platform: newUsage(), direct: newUsage() },
    };
    const differentText: Record<Phase, Record<PathName, number>> = { single: { platform: 0, direct: 0 }, concurrent: { platform: 0, direct: 0 } };

    const stallMs = options.stallSeconds * 1000;
    /** Settles with `work`, or rejects with BenchAbort when no stream receives a byte for stallMs. */
    async function watched<T>(work: Promise<T>, describe: () => string): Promise<T> {
      let last = received;
      let lastChange = Date.now();
      let timer: NodeJS.Timeout | undefined;
      const stalled = new Promise<never>((_, reject) => {
        timer = setInterval(
          () => {
            if (received !== last) {
              last = received;
              lastChange = Date.now();
            } else if (Date.now() - lastChange >= stallMs) {
              reject(new BenchAbort(`stalled: no byte received for ${options.stallSeconds} s (${describe()})`));
            }
          },
          Math.min(1000, stallMs),
        );
      });
      try {
        return await Promise.race([work, stalled]);
      } finally {
        clearInterval(timer);
      }
    }

    /** `count` streams on one path, `concurrency` in flight; recorded under `phase` unless null. */
    async function runBlock(name: PathName, count: number, concurrency: number, phase: Phase | null, label: string): Promise<void> {
      let next = 0;
      const where = () => `${PATH_LABELS[name]}, ${label}, ${concurrency} in flight wanted, ${open[name]} open, ${next} of ${count} started in this block`;
      const worker = async () => {
        while (next < count && !stopped) {
          next++;
          open[name]++;
          let reply: StreamReply | undefined;
          let failure: string | null;
          const controller = new AbortController();
          inFlight.add(controller);
          try {
            reply = await streamChat(targets[name], body, controller.signal, (n) => (received += n));
            failure = problemOf(reply);
          } catch (error) {
            if (stopped) return void open[name]--;
            const cause = (error as { cause?: { message?: string; code?: string } }).cause;
            failure = `the request failed: ${(error as Error).message}${cause ? ` (${cause.code ?? ''} ${cause.message ?? ''})` : ''}`;
          } finally {
            inFlight.delete(controller);
          }
          // Thrown while this stream still counts as open, so the message tells how many were in flight.
          if (failure !== null || !reply) throw new BenchAbort(`${where()}: ${failure}`);
          open[name]--;
          referenceText ??= reply.text;
          if (!phase) continue;
          const first = reply.contentAtNs[0]!;
          const last = reply.contentAtNs[reply.contentAtNs.length - 1]!;
          const chunks = reply.contentAtNs.length;
          samples[phase][name].push({
            ttftNs: first,
            gapNs: chunks > 1 ? (last - first) / BigInt(chunks - 1) : null,
            totalNs: reply.totalNs,
            chunks,
            reads: new Set(reply.contentAtNs).size,
          });
          if (reply.text !== referenceText) differentText[phase][name]++;
        }
      };
      const used = phase ? usage[phase][name] : undefined;
      const cpuBefore = process.cpuUsage();
      const runtimeCpuBefore = used ? processCpuMs(runtimePid[name]) : 0;
      lagSampler.record(used?.lagSamplesMs ?? null);
      const started = process.hrtime.bigint();
      const work = Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
      try {
        await watched(work, where);
      } catch (error) {
        // Stop the other workers' streams: the run is over.
        stopStreams(error);
        await work.catch(() => undefined);
        throw error;
      }
      if (used) {
        used.wallNs += process.hrtime.bigint() - started;
        lagSampler.record(null);
        const cpu = process.cpuUsage(cpuBefore);
        used.nodeCpuUs += cpu.user + cpu.system;
        used.runtimeCpuMs += processCpuMs(runtimePid[name]) - runtimeCpuBefore;
      }
    }

    /** Blocks of both paths in turn, rotating which goes first each round. */
    async function interleaved(perPath: number, block: number, concurrency: number, phase: Phase | null, label: string): Promise<void> {
      const rounds = Math.ceil(perPath / block);
      const done: Record<PathName, number> = { platform: 0, direct: 0 };
      for (let round = 0; round < rounds; round++) {
        for (let i = 0; i < PATHS.length; i++) {
          const name = PATHS[(round + i) % PATHS.length]!;
          const due = Math.round((perPath * (round + 1)) / rounds);
          if (due > done[name]) await runBlock(name, due - done[name], concurrency, phase, label);
          done[name] = Math.max(done[name], due);
        }
      }
    }

    const benchStarted = process.hrtime.bigint();
    log(`runtimes: ${JSON.stringify(platformRuntime.flags)} (parallel ${parallel}); setup took ${setupSeconds} s`);
    log(`single: ${options.warmup} warm-up + ${options.requests} streams per path, one in flight, blocks of ${options.block}…`);
    if (options.warmup > 0) await interleaved(options.warmup, options.block, 1, null, 'single-stream warm-up');
    await interleaved(options.requests, options.block, 1, 'single', 'single-stream phase');
    log(
      `concurrent: ${options.concurrency} warm-up + ${options.concurrentRequests} streams per path, ${options.concurrency} in flight, ` +
        `blocks of ${options.concurrentBlock}…`,
    );
    await interleaved(options.concurrency, options.concurrency, options.concurrency, null, 'concurrent warm-up');
    await interleaved(options.concurrentRequests, options.concurrentBlock, options.concurrency, 'concurrent', 'concurrent phase');
    const durationSeconds = Math.round(Number(process.hrtime.bigint() - benchStarted) / 1e7) / 100;
    lagSampler.stop();

    // The platform's runtime is still the one it started with (no crash and restart during the run).
    const pidsAfter = runtimePids().sort();
    if (JSON.stringify(pidsAfter) !== JSON.stringify([platformPid, direct.pid].sort())) {
      throw new BenchAbort(`the runtime processes changed during the run: ${JSON.stringify({ before: [platformPid, direct.pid], after: pidsAfter })}`);
    }

    const stats = Object.fromEntries(
      PHASES.map((phase) => [phase, Object.fromEntries(PATHS.map((n) => [n, pathStats(samples[phase][n], usage[phase][n], differentText[phase][n])]))]),
    ) as Record<Phase, Record<PathName, PathStats>>;
    const ratios = Object.fromEntries(PHASES.map((phase) => [phase, phaseRatios(stats[phase].platform, stats[phase].direct)])) as Record<Phase, PhaseRatios>;
    const concurrencyOf: Record<Phase, number> = { single: 1, concurrent: options.concurrency };

    const report = {
      ...benchEnvironment('streaming', command),
      database: options.embedded ? 'pglite' : 'postgresql',
      paths: PATH_LABELS,
      request: { url: 'POST /v1/chat/completions', body: requestBody },
      model: 'test/support/tinyGguf.ts (a ~0.35 MB llama model with random weights), node-llama-cpp on the CPU',
      runtimes: {
        description:
          'two llamaCppServer processes on the same GGUF file with the same flags (from /proc/<pid>/cmdline; "default": not given, the runtime’s default)',
        flags: platformRuntime.flags,
        parallel,
        threadsDefault: `cores − 1 = ${Math.max(1, os.availableParallelism() - 1)}`,
        platformPid,
        directPid: direct.pid,
      },
      definitions: {
        ttft: 'request start → the first chunk with non-empty delta.content received, ms',
        chunkGap: 'per stream: (last content chunk − first content chunk) / (content chunks − 1), ms; p50/p99 over streams',
        total: 'request start → the end of the body (after data: [DONE]), ms; requestsPerSecond: streams/s over the blocks’ wall time',
      },
      single: { concurrency: 1, streams: options.requests, warmup: options.warmup, blockSize: options.block, ...stats.single },
      concurrent: {
        concurrency: options.concurrency,
        streams: options.concurrentRequests,
        warmup: options.concurrency,
        blockSize: options.concurrentBlock,
        ...stats.concurrent,
      },
      ratios: { description: 'platform / direct; added = platform − direct, ms', ...ratios },
      setupSeconds,
      durationSeconds,
    };

    const f = (x: number) => x.toFixed(x < 10 ? 2 : 1);
    const rows = PHASES.flatMap((phase) =>
      PATHS.map((n) => {
        const s = stats[phase][n];
        return [
          String(concurrencyOf[phase]),
          n,
          f(s.ttft.p50),
          f(s.ttft.p99),
          f(s.chunkGap.p50),
          f(s.chunkGap.p99),
          f(s.total.p50),
          f(s.total.p99),
          s.total.requestsPerSecond.toFixed(1),
          s.chunksPerSecond.toFixed(0),
        ];
      }),
    );
    const header = ['in flight', 'path', 'TTFT p50', 'TTFT p99', 'gap p50', 'gap p99', 'total p50', 'total p99', 'streams/s', 'chunks/s'];
    const ratioRows = PHASES.map((phase) => {
      const r = ratios[phase];
      const added = (ms: number) => `${ms >= 0 ? '+' : '−'}${Math.abs(ms).toFixed(2)} ms`;
      return [
        String(concurrencyOf[phase]),
        `×${r.ttftP50.toFixed(2)} (${added(r.addedTtftP50Ms)})`,
        `×${r.ttftP99.toFixed(2)} (${added(r.addedTtftP99Ms)})`,
        `×${r.chunkGapP50.toFixed(2)} (${added(r.addedChunkGapP50Ms)})`,
        `×${r.chunkGapP99.toFixed(2)} (${added(r.addedChunkGapP99Ms)})`,
        `×${r.totalP50.toFixed(2)}`,
        `×${r.streamsPerSecond.toFixed(2)}`,
      ];
    });
    const costHeader = ['in flight', 'path', 'content reads/stream p50', 'Node CPU ms/stream', 'runtime CPU ms/stream', 'event-loop lag p50', 'p99', 'max'];
    const costRows = PHASES.flatMap((phase) =>
      PATHS.map((n) => {
        const s = stats[phase][n];
        return [
          String(concurrencyOf[phase]),
          n,
          String(s.contentReads.p50),
          s.cpuMsPerStream.node.toFixed(2),
          s.cpuMsPerStream.runtime.toFixed(2),
          s.eventLoopLagMs.p50.toFixed(1),
          s.eventLoopLagMs.p99.toFixed(1),
          s.eventLoopLagMs.max.toFixed(1),
        ];
      }),
    );
    const ratioHeader = ['in flight', 'TTFT p50', 'TTFT p99', 'gap p50', 'gap p99', 'total p50', 'streams/s'];
    /** Columns before `left` are text (left-aligned), the others figures. */
    const textTable = (head: string[], body: string[][], left: number) => {
      const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
      const line = (cells: string[]) => cells.map((c, i) => (i < left ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
      return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
    };
    const mdTable = (head: string[], body: string[][], left: number) => [
      `| ${head.join(' | ')} |`,
      `|${head.map((_, i) => (i < left ? '---' : '---:')).join('|')}|`,
      ...body.map((r) => `| ${r.join(' | ')} |`),
    ];
    const chunkNote = PHASES.flatMap((phase) =>
      PATHS.map((n) => {
        const s = stats[phase][n];
        return `${concurrencyOf[phase]}/${n}: ${s.contentChunks.min === s.contentChunks.max ? s.contentChunks.min : `${s.contentChunks.min}-${s.contentChunks.max}`}`;
      }),
    ).join(', ');
    const differing = PHASES.flatMap((phase) => PATHS.map((n) => stats[phase][n].differentText)).reduce((a, b) => a + b, 0);

    const markdown = [
      '# Streaming inference',
      '',
      `Produced by \`${command}\` on ${report.date}.`,
      '',
      `- Node ${report.node}, ${report.cpu.model} (${report.cpu.cores} cores), ${report.os}; database ${report.database}`,
      `- Request: \`POST /v1/chat/completions\`, \`stream: true\`, max_tokens ${options.maxTokens}, temperature 0, seed ${SEED}; ` + `model: ${report.model}`,
      `- Runtimes: two llamaCppServer processes, same GGUF file, flags ${JSON.stringify(platformRuntime.flags)} (parallel ${parallel}, ` +
        `threads ${report.runtimes.threadsDefault})`,
      `- 1 stream: ${options.requests} per path after ${options.warmup} warm-up, blocks of ${options.block}; ` +
        `${options.concurrency} streams: ${options.concurrentRequests} per path after ${options.concurrency} warm-up, blocks of ${options.concurrentBlock}; ` +
        `paths alternate, the first rotating each round`,
      `- Content chunks per stream: ${chunkNote}; streams whose text differs from the first one's: ${differing}`,
      `- Client, control plane and agent in one Node process; both runtimes child processes; one machine. Setup ${setupSeconds} s, measured run ${durationSeconds} s`,
      '',
      'Milliseconds (TTFT: to the first content chunk; gap: a stream’s mean time between content chunks; total: to the end of the body):',
      '',
      ...mdTable(header, rows, 2),
      '',
      'platform / direct (added ms):',
      '',
      ...mdTable(ratioHeader, ratioRows, 1),
      '',
      'Where the time goes: the body reads that brought a stream’s content chunks (one per chunk when they stream; 1 when they come ' +
        'in one burst); CPU per stream of this Node process (the client; on the platform path also the control plane and the agent) ' +
        'and of the runtime that served the path; this process’s event-loop lag while the path ran (how late a 10 ms timer fired, ms):',
      '',
      ...mdTable(costHeader, costRows, 2),
      '',
    ].join('\n');

    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(path.join(RESULTS_DIR, 'streaming.json'), `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(path.join(RESULTS_DIR, 'streaming.md'), markdown);

    console.log(
      `\n${textTable(header, rows, 2)}\n\nplatform / direct (added ms):\n${textTable(ratioHeader, ratioRows, 1)}\n\n${textTable(costHeader, costRows, 2)}\n`,
    );
    if (differing > 0) log(`note: ${differing} stream(s) produced a text other than the first stream's (see differentText in the JSON)`);
    log(`wrote ${path.relative(process.cwd(), RESULTS_DIR)}/streaming.{json,md} (setup ${setupSeconds} s, run ${durationSeconds} s)`);
  } finally {
    await cleanUp();
  }
}

runBench(main);
