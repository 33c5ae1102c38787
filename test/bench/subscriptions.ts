/**
 * Federated subscription fan-out benchmark (`npm run bench:subscriptions`, options after `--`; `npm run bench` runs it too).
 *
 * DESIGN §3: "10,000 followers of one job must not cost 10,000 upstream sockets or entity fetches". The
 * platform is started as test/fineTuning.test.ts starts it (the default cluster's embedded agent with the
 * demo trainer, a base model in Hugging Face layout in the object store), then, one phase after the other,
 * each on a fresh fine-tuning job:
 *   - baseline: 1 follower of the job's `jobLogs` over graphql-ws through the gateway (1 connection);
 *   - fan-out:  --followers (1000) followers of the same job with the same variables, spread over
 *               --connections (followers / 50) graphql-ws connections, all with the admin key (the same
 *               authorization scope, so the gateway may share one upstream subscription among them).
 * Each follower runs the operation of test/fineTuning.test.ts plus the lines' `time`: its `job.baseModel`
 * fields come from the models subgraph (the rest of the query plan: one `_entities` fetch per hydrated event).
 *
 * A phase: the job is created (one epoch of many examples: it outlasts the phase) and runs until its trainer
 * has written a first line; the followers subscribe; once every one of them has received an event (the lines
 * so far: the history of the shared subscription), the measurement window opens for --measure-s seconds.
 * Then the job is cancelled, and every follower must see the rest of the log and the subscription complete.
 *   - delivery latency: per line and follower, receipt (in the client process) − the line's `time` (stamped by
 *     the agent when the trainer wrote the line; the agent sends lines in batches 100 ms after the first, so
 *     the baseline carries up to 100 ms of that batching); lines stamped inside the window only; p50/p90/p99;
 *   - fan-out spread: per upstream event (same `nextOffset`), last follower's receipt − first follower's;
 *   - events/s and lines/s delivered to all followers together (receipts inside the window);
 *   - upstream subscriptions the gateway holds (`gatewaySharedSubscriptions()`) before, during (max) and after;
 *   - HTTP requests to each subgraph during the window (undici's diagnostics channel): the models subgraph's are
 *     the hydrations' entity fetches, which must not grow with the followers;
 *   - the platform process's RSS and heap before the followers subscribe, at the peak, at the end of the window
 *     and after they have gone; its CPU and event-loop delay during the window; the client process's too.
 * Checks (counted and reported, they do not stop the run, since they are what this benchmark looks for): each
 * follower's line offsets run 0, 1, 2… with no gap and no duplicate, every follower ends at the same offset as
 * the job's stored log, no follower gets an error. Setup failures, a join that does not finish within
 * --join-timeout-s, or a follower group that never completes abort the run with exit status 1.
 * Writes bench-results/subscriptions.{json,md} (--out PATH: the JSON there, the markdown beside it).
 *
 *   --followers N       fan-out phase: followers of the job (default 1000)
 *   --connections M     fan-out phase: graphql-ws connections they are spread over (default followers / 50, rounded up)
 *   --measure-s S       the measurement window, once all followers have joined (default 15)
 *   --step-ms MS        MARINER_DEMO_TRAINER_STEP_MS: one log line per step (default 20)
 *   --join-timeout-s S  abort when the followers have not all received an event within S seconds (default 180)
 *   --late-after-events E  fan-out phase: one follower subscribes first, the others once it has received E events
 *                      (default 0: all at once). With E above the gateway's `subscriptions.maxQueuedEvents` (the
 *                      bound of a shared `jobLogs` subscription's history), the others join a subscription whose
 *                      history is no longer complete: the case of followers joining a long-running job
 *   --max-queued-events Q  the gateway's `subscriptions.maxQueuedEvents` (default: its default, 1000)
 *   --embedded          PGlite instead of a fresh PostgreSQL database
 *   --out PATH          where the JSON goes (default bench-results/subscriptions.json)
 *
 * The followers run in a child process (this file, started again with MARINER_BENCH_SUBSCRIPTIONS_CLIENT=1),
 * so the platform process (gateway, subgraphs, agent) has its memory and event loop to itself; both on one
 * machine, so the client's parsing competes with the gateway for the cores.
 */
import { fork, type ChildProcess } from 'node:child_process';
import diagnosticsChannel from 'node:diagnostics_channel';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';
import { createClient, type Client } from 'graphql-ws';
import OpenAI, { toFile } from 'openai';
import { WebSocket } from 'ws';
import { demoTrainerCommand } from '../../agent/trainers/demoTrainer.js';
import { loadConfig } from '../../lib/config.js';
import { DEFAULT_TENANT_ID } from '../../subgraphs/users/index.js';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { BenchAbort, benchEnvironment, intOption, latencyStats, type LatencyStats, parseBenchArgs, runBench, UsageError } from './support.js';
import { waitFor } from '../support/until.js';

const RESULTS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench-results');
const CLIENT_ENV = 'MARINER_BENCH_SUBSCRIPTIONS_CLIENT';
const BASE_MODEL = 'tiny-hf';
/** Followers per connection by default: half the gateway's per-connection cap (`subscriptions.maxPerConnection`, 100), which is kept. */
const DEFAULT_PER_CONNECTION = 50;
const CLOSE_TIMEOUT_MS = 30_000;
/** After the cancel: the agent stops the trainer, sends the last lines and the phase; followers complete. */
const FINISH_TIMEOUT_MS = 90_000;

const JOB_LOGS = `subscription Logs($jobId: ID!, $fromOffset: Int) {
  jobLogs(jobId: $jobId, fromOffset: $fromOffset) {
    nextOffset
    lines { offset text time }
    job { id status ... on FineTuningJob { baseModel { id ownedBy isBaseModel } } }
  }
}`;

interface Options {
  followers: number;
  connections: number;
  measureSeconds: number;
  stepMs: number;
  joinTimeoutSeconds: number;
  lateAfterEvents: number;
  maxQueuedEvents: number | undefined;
  embedded: boolean;
  out: string;
}

const CLI_OPTIONS = {
  followers: { type: 'string', default: '1000' },
  connections: { type: 'string' },
  'measure-s': { type: 'string', default: '15' },
  'step-ms': { type: 'string', default: '20' },
  'join-timeout-s': { type: 'string', default: '180' },
  'late-after-events': { type: 'string', default: '0' },
  'max-queued-events': { type: 'string' },
  embedded: { type: 'boolean', default: false },
  out: { type: 'string' },
} as const;

function parseOptions(argv: string[]): Options {
  const values = parseBenchArgs(
    argv,
    CLI_OPTIONS,
    '--followers N --connections M --measure-s S --step-ms MS --join-timeout-s S --late-after-events E --max-queued-events Q --embedded --out PATH',
  );
  const followers = intOption('followers', values.followers, 1);
  const connections = values.connections === undefined ? Math.ceil(followers / DEFAULT_PER_CONNECTION) : intOption('connections', values.connections, 1);
  if (connections > followers) throw new UsageError(`--connections (${connections}) cannot exceed --followers (${followers})`);
  return {
    followers,
    connections,
    measureSeconds: intOption('measure-s', values['measure-s'], 1),
    stepMs: intOption('step-ms', values['step-ms'], 1),
    joinTimeoutSeconds: intOption('join-timeout-s', values['join-timeout-s'], 1),
    lateAfterEvents: intOption('late-after-events', values['late-after-events'], 0),
    maxQueuedEvents: values['max-queued-events'] === undefined ? undefined : intOption('max-queued-events', values['max-queued-events'], 1),
    embedded: values.embedded,
    out: path.resolve(values.out ?? path.join(RESULTS_DIR, 'subscriptions.json')),
  };
}

// ---------------------------------------------------------------------------------------------
// Messages between the platform process and the client process.

interface FollowRequest {
  type: 'follow';
  url: string;
  token: string;
  jobId: string;
  followers: number;
  connections: number;
  measureMs: number;
  /** Follower 0 subscribes alone; the others once it has received this many events (0: all at once). */
  lateAfterEvents: number;
}
type ToClient = FollowRequest | { type: 'finish'; timeoutMs: number };

/** Latency figures over a histogram (0.1 ms buckets): the same nearest-rank percentiles as latencyStats. */
type HistogramStats = Omit<LatencyStats, 'requestsPerSecond'>;

interface PhaseResult {
  followers: number;
  connections: number;
  /** The followers' subscribe calls → the last of them received its first event. */
  joinMs: number;
  /** With --late-after-events: the pilot follower's subscribe → the others' subscribe calls. */
  pilotMs: number | null;
  /** Followers that got an error (the message, and how many), or whose connection closed before the end. */
  errors: Record<string, number>;
  completed: number;
  /** Follower-lines whose offset was not the one expected (a gap or a repeat), and the first few. */
  offsetAnomalies: number;
  anomalyExamples: string[];
  /** The offsets the followers ended at (the last line's + 1), with how many ended there. */
  finalOffsets: Record<string, number>;
  window: { startMs: number; endMs: number };
  /** Per line and follower, lines stamped inside the window: receipt − `time`, ms. */
  latency: HistogramStats;
  /** Receipts of `time` that was later than the receipt (clock granularity; counted as 0). */
  negativeLatencies: number;
  /** Per upstream event (distinct nextOffset) with lines stamped in the window: last receipt − first, ms. */
  spread: LatencyStats | null;
  /** Distinct upstream events (nextOffset) whose lines were stamped in the window. */
  upstreamEventsInWindow: number;
  /** Receipts inside the window, all followers together. */
  eventsDelivered: number;
  linesDelivered: number;
  eventsPerSecond: number;
  linesPerSecond: number;
  client: { cpuMsInWindow: number; cpuCoresInWindow: number; rssMiB: number; heapUsedMiB: number };
}

type FromClient =
  | { type: 'ready' }
  | { type: 'joined'; joinMs: number; failedBeforeJoin: number; errors: Record<string, number> }
  | { type: 'result'; result: PhaseResult }
  | { type: 'error'; message: string };

const MiB = (bytes: number) => Math.round((bytes / 1048576) * 10) / 10;
const round = (x: number, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits;

// ---------------------------------------------------------------------------------------------
// The client process: the followers.

const BUCKET_MS = 0.1;
const MAX_BUCKET = 1_200_000; // 120 s

class Histogram {
  private readonly buckets = new Uint32Array(MAX_BUCKET + 1);
  count = 0;
  private sum = 0;
  private min = Infinity;
  private max = -Infinity;
  add(ms: number): void {
    this.buckets[Math.min(MAX_BUCKET, Math.floor(ms / BUCKET_MS))]!++;
    this.count++;
    this.sum += ms;
    if (ms < this.min) this.min = ms;
    if (ms > this.max) this.max = ms;
  }
  stats(): HistogramStats {
    if (this.count === 0) return { count: 0, p50: NaN, p90: NaN, p99: NaN, mean: NaN, min: NaN, max: NaN };
    const at = (q: number) => {
      const rank = Math.max(1, Math.ceil(q * this.count));
      let seen = 0;
      for (let i = 0; i <= MAX_BUCKET; i++) {
        seen += this.buckets[i]!;
        // The bucket's middle, within the observed range.
        if (seen >= rank) return Math.min(this.max, Math.max(this.min, (i + 0.5) * BUCKET_MS));
      }
      return this.max;
    };
    return {
      count: this.count,
      p50: round(at(0.5)),
      p90: round(at(0.9)),
      p99: round(at(0.99)),
      mean: round(this.sum / this.count),
      min: round(this.min),
      max: round(this.max),
    };
  }
}

interface LogEvent {
  jobLogs: { nextOffset: number; lines: { offset: number; text: string; time: string }[]; job: { id: string; status: string; baseModel?: { id: string } } };
}

async function clientMain(): Promise<void> {
  const send = (message: FromClient) => process.send!(message);
  const now = () => performance.timeOrigin + performance.now();
  let phase: ReturnType<typeof startPhase> | undefined;

  function startPhase(request: FollowRequest) {
    const { followers, connections } = request;
    const expected = new Int32Array(followers);
    const gotEvent = new Uint8Array(followers);
    const ended = new Uint8Array(followers);
    const errors: Record<string, number> = {};
    const anomalyExamples: string[] = [];
    let anomalies = 0;
    let joined = 0;
    let failedBeforeJoin = 0;
    let completed = 0;
    let endedCount = 0;
    let window: { startMs: number; endMs: number } | undefined;
    const latency = new Histogram();
    let negative = 0;
    let eventsDelivered = 0;
    let linesDelivered = 0;
    const spreadByEvent = new Map<number, { first: number; last: number }>();
    let cpuAtWindow: NodeJS.CpuUsage | undefined;
    let cpuInWindow: NodeJS.CpuUsage | undefined;
    let onAllEnded: (() => void) | undefined;
    const started = now();

    const clients: Client[] = Array.from({ length: connections }, () =>
      createClient({
        url: request.url,
        webSocketImpl: WebSocket,
        retryAttempts: 0,
        lazy: true,
        connectionParams: { authorization: `Bearer ${request.token}` },
      }),
    );
    const end = (i: number) => {
      if (ended[i]) return;
      ended[i] = 1;
      endedCount++;
      if (!gotEvent[i]) {
        failedBeforeJoin++;
        maybeJoined();
      }
      if (endedCount >= followers) onAllEnded?.();
    };
    const maybeJoined = () => {
      if (window || joined + failedBeforeJoin < followers) return;
      const at = now();
      window = { startMs: at, endMs: at + request.measureMs };
      cpuAtWindow = process.cpuUsage();
      setTimeout(() => (cpuInWindow = process.cpuUsage(cpuAtWindow)), request.measureMs).unref();
      send({ type: 'joined', joinMs: round(at - started, 1), failedBeforeJoin, errors });
    };

    let pilotEvents = 0;
    let pilotMs: number | null = null;
    let subscribeOthers: (() => void) | undefined;
    const subscribe = (i: number) => {
      const client = clients[i % connections]!;
      client.subscribe<LogEvent>(
        { query: JOB_LOGS, variables: { jobId: request.jobId } },
        {
          next: (result) => {
            const at = now();
            if (result.errors?.length || !result.data) {
              const message = result.errors?.[0]?.message ?? 'an event without data';
              errors[message] = (errors[message] ?? 0) + 1;
              return;
            }
            const chunk = result.data.jobLogs;
            if (i === 0 && subscribeOthers && ++pilotEvents >= request.lateAfterEvents) {
              pilotMs = round(at - started, 1);
              const others = subscribeOthers;
              subscribeOthers = undefined;
              others();
            }
            if (!gotEvent[i]) {
              gotEvent[i] = 1;
              joined++;
              maybeJoined();
            }
            const inWindow = window !== undefined && at >= window.startMs && at <= window.endMs;
            if (inWindow) {
              eventsDelivered++;
              linesDelivered += chunk.lines.length;
            }
            let stampedInWindow = false;
            for (const line of chunk.lines) {
              if (line.offset !== expected[i]) {
                anomalies++;
                if (anomalyExamples.length < 10) anomalyExamples.push(`follower ${i}: offset ${line.offset}, expected ${expected[i]}`);
              }
              expected[i] = line.offset + 1;
              const time = Date.parse(line.time);
              if (window && time >= window.startMs && time <= window.endMs) {
                stampedInWindow = true;
                let ms = at - time;
                if (ms < 0) {
                  negative++;
                  ms = 0;
                }
                latency.add(ms);
              }
            }
            if (stampedInWindow) {
              const spread = spreadByEvent.get(chunk.nextOffset);
              if (!spread) spreadByEvent.set(chunk.nextOffset, { first: at, last: at });
              else {
                if (at < spread.first) spread.first = at;
                if (at > spread.last) spread.last = at;
              }
            }
          },
          error: (error) => {
            const message =
              error instanceof Error
                ? error.message
                : Array.isArray(error)
                  ? JSON.stringify(error).slice(0, 200)
                  : typeof (error as { code?: unknown })?.code === 'number'
                    ? `connection closed ${(error as { code: number }).code} ${(error as { reason?: string }).reason ?? ''}`.trim()
                    : String(error);
            errors[message] = (errors[message] ?? 0) + 1;
            end(i);
          },
          complete: () => {
            completed++;
            end(i);
          },
        },
      );
    };
    const subscribeFrom = (first: number) => {
      for (let i = first; i < followers; i++) subscribe(i);
    };
    if (request.lateAfterEvents > 0 && followers > 1) {
      subscribeOthers = () => subscribeFrom(1);
      subscribe(0);
    } else subscribeFrom(0);

    return {
      async finish(timeoutMs: number): Promise<PhaseResult> {
        if (endedCount < followers) {
          await new Promise<void>((resolve, reject) => {
            const timer = setTimeout(
              () =>
                reject(
                  new Error(
                    `the followers did not all end within ${timeoutMs / 1000} s after the job was cancelled: ${completed} completed, errors ${JSON.stringify(errors)}, of ${followers}`,
                  ),
                ),
              timeoutMs,
            );
            onAllEnded = () => {
              clearTimeout(timer);
              resolve();
            };
          });
        }
        await Promise.all(clients.map(async (c) => c.dispose()));
        const finalOffsets: Record<string, number> = {};
        for (let i = 0; i < followers; i++) finalOffsets[String(expected[i])] = (finalOffsets[String(expected[i])] ?? 0) + 1;
        const w = window ?? { startMs: 0, endMs: 0 };
        const seconds = (w.endMs - w.startMs) / 1000;
        const spreadNs = [...spreadByEvent.values()].map((s) => BigInt(Math.round((s.last - s.first) * 1e6)));
        const cpu = cpuInWindow ?? process.cpuUsage(cpuAtWindow);
        const cpuMs = (cpu.user + cpu.system) / 1000;
        const memory = process.memoryUsage();
        return {
          followers,
          connections,
          joinMs: window ? round(w.startMs - started, 1) : NaN,
          pilotMs,
          errors,
          completed,
          offsetAnomalies: anomalies,
          anomalyExamples,
          finalOffsets,
          window: { startMs: round(w.startMs, 1), endMs: round(w.endMs, 1) },
          latency: latency.stats(),
          negativeLatencies: negative,
          spread: spreadNs.length ? latencyStats(spreadNs, BigInt(Math.round(seconds * 1e9)) || 1n) : null,
          upstreamEventsInWindow: spreadByEvent.size,
          eventsDelivered,
          linesDelivered,
          eventsPerSecond: seconds > 0 ? Math.round(eventsDelivered / seconds) : 0,
          linesPerSecond: seconds > 0 ? Math.round(linesDelivered / seconds) : 0,
          client: {
            cpuMsInWindow: Math.round(cpuMs),
            cpuCoresInWindow: seconds > 0 ? round(cpuMs / 1000 / seconds, 2) : 0,
            rssMiB: MiB(memory.rss),
            heapUsedMiB: MiB(memory.heapUsed),
          },
        };
      },
    };
  }

  process.on('message', (message: ToClient) => {
    void (async () => {
      try {
        if (message.type === 'follow') phase = startPhase(message);
        else if (message.type === 'finish') {
          const result = await phase!.finish(message.timeoutMs);
          phase = undefined;
          send({ type: 'result', result });
        }
      } catch (error) {
        send({ type: 'error', message: (error as Error).message });
      }
    })();
  });
  // The parent went away: nothing left to do.
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready' });
}

// ---------------------------------------------------------------------------------------------
// The platform process.

/** OpenAI chat-format training examples, as test/fineTuning.test.ts writes them. */
function trainingData(examples: number): Buffer {
  const lines = Array.from({ length: examples }, (_, i) =>
    JSON.stringify({
      messages: [
        { role: 'user', content: `question ${i}` },
        { role: 'assistant', content: `answer ${i}` },
      ],
    }),
  );
  return Buffer.from(lines.join('\n') + '\n');
}

function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    work.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new BenchAbort(`${what} did not finish within ${ms / 1000} s`)), ms))),
  ]);
}

/** The client process, with a promise per expected message type. */
function startClient(): {
  child: ChildProcess;
  next<T extends FromClient['type']>(type: T, timeoutMs: number, what: string): Promise<Extract<FromClient, { type: T }>>;
  send(message: ToClient): void;
} {
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  const child = fork(fileURLToPath(import.meta.url), [], {
    execArgv: ['--import', tsx],
    env: { ...process.env, [CLIENT_ENV]: '1' },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const inbox: FromClient[] = [];
  let waiter: (() => void) | undefined;
  let exited: string | undefined;
  child.on('message', (message: FromClient) => {
    inbox.push(message);
    waiter?.();
  });
  child.on('exit', (code, signal) => {
    exited = `the client process exited (${code ?? signal})`;
    waiter?.();
  });
  return {
    child,
    send: (message) => child.send(message),
    async next(type, timeoutMs, what) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const index = inbox.findIndex((m) => m.type === type || m.type === 'error');
        if (index !== -1) {
          const [message] = inbox.splice(index, 1);
          if (message!.type === 'error') throw new BenchAbort(`${what}: ${message!.message}`);
          return message as never;
        }
        if (exited) throw new BenchAbort(`${what}: ${exited}`);
        const left = deadline - Date.now();
        if (left <= 0) throw new BenchAbort(`${what}: no answer within ${timeoutMs / 1000} s`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(left, 1000));
          waiter = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        waiter = undefined;
      }
    },
  };
}

interface Memory {
  rssMiB: number;
  heapUsedMiB: number;
}
/** A full garbage collection, without starting Node with --expose-gc. */
function collectGarbage(): void {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  gc();
  gc();
}

const memory = (): Memory => {
  const m = process.memoryUsage();
  return { rssMiB: MiB(m.rss), heapUsedMiB: MiB(m.heapUsed) };
};

interface PhaseReport {
  name: string;
  jobId: string;
  client: PhaseResult;
  upstreams: { before: number; atJoin: number; maxInWindow: number; afterClose: number };
  platform: {
    memoryBefore: Memory;
    memoryAtJoin: Memory;
    /** Sampled every 100 ms from the join to the followers' end (the cancel's backlog included). */
    rssPeakMiB: number;
    memoryEndOfWindow: Memory;
    memoryAfterClose: Memory;
    /** After the followers went and a forced full garbage collection. */
    memoryAfterGc: Memory;
    cpuMsInWindow: number;
    cpuCoresInWindow: number;
    eventLoopDelayMs: { p50: number; p99: number; max: number };
  };
  /** HTTP requests the platform process sent to each component during the window (undici). */
  requestsInWindow: Record<string, number>;
  storedLines: number;
  problems: string[];
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const options = parseOptions(argv);
  const command = `npm run bench:subscriptions${argv.length ? ` -- ${argv.join(' ')}` : ''}`;
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const defaults = loadConfig({}).subscriptions;
  const perConnection = Math.ceil(options.followers / options.connections);
  if (perConnection > defaults.maxPerConnection) {
    throw new UsageError(
      `${options.followers} followers on ${options.connections} connections is ${perConnection} per connection, over the gateway's cap of ${defaults.maxPerConnection}: add connections`,
    );
  }

  process.env['MARINER_DEMO_TRAINER_STEP_MS'] = String(options.stepMs);
  // One job per phase, long enough to outlast the join, the window and the cancel (one line per step).
  const jobSeconds = options.joinTimeoutSeconds + options.measureSeconds + 60;
  const examples = Math.ceil((jobSeconds * 1000) / options.stepMs);

  log(
    `starting the platform (${options.embedded ? 'PGlite' : 'PostgreSQL'}) with the default cluster's agent and the demo trainer (${options.stepMs} ms per step)…`,
  );
  let t: TestPlatform | undefined;
  let client: ReturnType<typeof startClient> | undefined;
  let closing: Promise<void> | undefined;
  const cleanUp = () =>
    (closing ??= withTimeout(
      (async () => {
        client?.child.kill();
        await t?.close();
      })(),
      CLOSE_TIMEOUT_MS,
      'closing the platform',
    ));
  const onSignal = (signal: NodeJS.Signals) => {
    log(`\n${signal}: closing the platform…`);
    void cleanUp().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  // HTTP requests this process sends (global fetch: the gateway's subgraph calls, the agent's reports), by origin.
  const requestsByOrigin = new Map<string, number>();
  const onRequest = (message: unknown) => {
    const request = (message as { request?: { origin?: unknown } }).request;
    const origin = String(request?.origin ?? 'unknown');
    requestsByOrigin.set(origin, (requestsByOrigin.get(origin) ?? 0) + 1);
  };
  diagnosticsChannel.subscribe('undici:request:create', onRequest);

  try {
    const setupStarted = process.hrtime.bigint();
    t = await startTestPlatform({
      embedded: options.embedded,
      defaultCluster: true,
      config: {
        jobs: { dispatchIntervalMs: 200, localTrainerCommand: demoTrainerCommand() },
        // Every follower uses the admin key: one user, so the per-user cap must allow them all.
        subscriptions: {
          ...defaults,
          maxPerUser: Math.max(defaults.maxPerUser, options.followers + 10),
          ...(options.maxQueuedEvents !== undefined ? { maxQueuedEvents: options.maxQueuedEvents } : {}),
        },
      },
    });
    const platform = t;
    const sdk = new OpenAI({ apiKey: platform.adminKey, baseURL: `${platform.url}/v1`, maxRetries: 0 });
    const originNames = new Map<string, string>([[new URL(platform.url).origin, 'gateway (agent reports, REST)']]);
    for (const [name, url] of Object.entries(platform.platform.subgraphUrls)) originNames.set(new URL(url).origin, name);

    // A base model in Hugging Face layout, loaded by the embedded agent's loader (as test/fineTuning.test.ts).
    const prefix = `models/${DEFAULT_TENANT_ID}/uploads/${BASE_MODEL}`;
    await platform.platform.objectStore.put(`${prefix}/config.json`, Readable.from([Buffer.from('{"model_type":"llama"}')]));
    await platform.platform.objectStore.put(`${prefix}/model.safetensors`, Readable.from([Buffer.alloc(64)]));
    await platform.gqlOk(`mutation($input: CreateBaseModelInput!) { createBaseModel(input: $input) { id } }`, {
      input: { id: BASE_MODEL, sourceRepository: 'OBJECT_STORE', source: prefix, isProjectScoped: false },
    });
    const loaded = await waitFor(
      () =>
        platform.gqlOk<{ model: { loadingStatus: string; formats: string[] } }>(
          `query { model(id: "${BASE_MODEL}", includeLoading: true) { loadingStatus formats } }`,
        ),
      (d) => d.model.loadingStatus === 'SUCCEEDED' || d.model.loadingStatus === 'FAILED',
      'the base model to load',
      60_000,
    );
    if (loaded.model.loadingStatus !== 'SUCCEEDED') throw new BenchAbort(`the base model did not load: ${JSON.stringify(loaded.model)}`);
    const trainingFile = (await sdk.files.create({ file: await toFile(trainingData(examples), 'train.jsonl'), purpose: 'fine-tune' })).id;

    client = startClient();
    await client.next('ready', 60_000, 'starting the client process');
    const setupSeconds = Math.round(Number(process.hrtime.bigint() - setupStarted) / 1e7) / 100;
    const wsUrl = platform.graphqlUrl.replace(/^http/, 'ws');

    const storedLines = async (jobId: string): Promise<number> => {
      let offset = 0;
      for (;;) {
        const { fineTuningJob } = await platform.gqlOk<{ fineTuningJob: { logs: { nextOffset: number; hasMore: boolean } } }>(
          `query($id: ID!, $from: Int) { fineTuningJob(id: $id) { logs(fromOffset: $from, limit: 1000) { nextOffset hasMore } } }`,
          { id: jobId, from: offset },
        );
        offset = fineTuningJob.logs.nextOffset;
        if (!fineTuningJob.logs.hasMore) return offset;
      }
    };

    async function runPhase(name: string, followers: number, connections: number, lateAfterEvents: number): Promise<PhaseReport> {
      const c = client!;
      const created = await sdk.fineTuning.jobs.create({
        model: BASE_MODEL,
        training_file: trainingFile,
        suffix: `bench-${name}`,
        hyperparameters: { n_epochs: 1 },
      });
      await waitFor(
        () =>
          platform.gqlOk<{ fineTuningJob: { status: string; logs: { lines: unknown[] } } }>(
            `query($id: ID!) { fineTuningJob(id: $id) { status logs(limit: 1) { lines { offset } } } }`,
            { id: created.id },
          ),
        (d) => d.fineTuningJob.status === 'RUNNING' && d.fineTuningJob.logs.lines.length > 0,
        `job ${created.id} to run and write its first line`,
        60_000,
      );
      const upstreamsBefore = platform.platform.gatewaySharedSubscriptions();
      const memoryBefore = memory();
      log(`${name}: ${followers} follower(s) on ${connections} connection(s) of job ${created.id}…`);
      c.send({
        type: 'follow',
        url: wsUrl,
        token: platform.adminKey,
        jobId: created.id,
        followers,
        connections,
        measureMs: options.measureSeconds * 1000,
        lateAfterEvents,
      });
      let rssPeak = process.memoryUsage().rss;
      const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 100);
      try {
        const joined = await c.next('joined', options.joinTimeoutSeconds * 1000, `${name}: waiting for the followers to join`);
        if (joined.failedBeforeJoin === followers)
          throw new BenchAbort(`${name}: every follower failed before its first event: ${JSON.stringify(joined.errors).slice(0, 1000)}`);
        const upstreamsAtJoin = platform.platform.gatewaySharedSubscriptions();
        const memoryAtJoin = memory();
        log(
          `${name}: all joined in ${(joined.joinMs / 1000).toFixed(2)} s${joined.failedBeforeJoin ? ` (${joined.failedBeforeJoin} failed before their first event)` : ''}; measuring ${options.measureSeconds} s…`,
        );
        rssPeak = process.memoryUsage().rss;
        const requestsBefore = new Map(requestsByOrigin);
        const delay = monitorEventLoopDelay({ resolution: 10 });
        delay.enable();
        const cpuBefore = process.cpuUsage();
        let upstreamsMax = upstreamsAtJoin;
        const upstreamSampler = setInterval(() => (upstreamsMax = Math.max(upstreamsMax, platform.platform.gatewaySharedSubscriptions())), 100);
        await new Promise((resolve) => setTimeout(resolve, options.measureSeconds * 1000));
        clearInterval(upstreamSampler);
        const cpu = process.cpuUsage(cpuBefore);
        delay.disable();
        const requestsInWindow: Record<string, number> = {};
        for (const [origin, count] of requestsByOrigin) {
          const added = count - (requestsBefore.get(origin) ?? 0);
          if (added > 0) requestsInWindow[originNames.get(origin) ?? origin] = added;
        }
        const memoryEndOfWindow = memory();

        log(`${name}: cancelling the job; waiting for every follower to get the rest of the log and complete…`);
        await sdk.fineTuning.jobs.cancel(created.id);
        c.send({ type: 'finish', timeoutMs: FINISH_TIMEOUT_MS });
        const { result } = await c.next('result', FINISH_TIMEOUT_MS + 30_000, `${name}: waiting for the followers to complete`);
        // The shared upstream goes when its last subscriber does.
        const afterClose = await waitFor(
          async () => platform.platform.gatewaySharedSubscriptions(),
          (n) => n <= upstreamsBefore,
          'the upstream subscriptions to close',
          10_000,
        ).catch(() => platform.platform.gatewaySharedSubscriptions());
        await new Promise((resolve) => setTimeout(resolve, 500));
        const memoryAfterClose = memory();
        const rssPeakMiB = MiB(Math.max(rssPeak, process.memoryUsage().rss));
        // What the followers left behind once garbage is collected: a leak stays, garbage goes.
        collectGarbage();
        const memoryAfterGc = memory();
        const stored = await storedLines(created.id);

        const problems: string[] = [];
        const added = upstreamsMax - upstreamsBefore;
        // Late joiners of a feed whose history outgrew the gateway's bound share one replaying upstream
        // besides the first follower's; joiners at other moments may start another (a few, never one each).
        const late = lateAfterEvents > 0 && followers > 1;
        const expected = late ? 'at most 3' : '1';
        if (late ? added < 1 || added > 3 : added !== 1)
          problems.push(`the gateway held ${added} upstream subscription(s) for ${followers} follower(s) of one job (expected ${expected})`);
        if (Object.keys(result.errors).length) problems.push(`followers got errors: ${JSON.stringify(result.errors)}`);
        if (result.completed !== followers) problems.push(`${result.completed} of ${followers} followers completed`);
        if (result.offsetAnomalies) problems.push(`${result.offsetAnomalies} out-of-order, missing or repeated line(s): ${result.anomalyExamples.join('; ')}`);
        const finals = Object.keys(result.finalOffsets);
        if (finals.length !== 1 || Number(finals[0]) !== stored)
          problems.push(`followers ended at offsets ${JSON.stringify(result.finalOffsets)}; the job's stored log has ${stored} lines`);
        if (afterClose > upstreamsBefore) problems.push(`${afterClose - upstreamsBefore} upstream subscription(s) still open after the followers went`);
        for (const problem of problems) log(`${name}: PROBLEM: ${problem}`);

        const windowSeconds = options.measureSeconds;
        const cpuMs = (cpu.user + cpu.system) / 1000;
        return {
          name,
          jobId: created.id,
          client: result,
          upstreams: { before: upstreamsBefore, atJoin: upstreamsAtJoin, maxInWindow: upstreamsMax, afterClose },
          platform: {
            memoryBefore,
            memoryAtJoin,
            rssPeakMiB,
            memoryEndOfWindow,
            memoryAfterClose,
            memoryAfterGc,
            cpuMsInWindow: Math.round(cpuMs),
            cpuCoresInWindow: round(cpuMs / 1000 / windowSeconds, 2),
            eventLoopDelayMs: { p50: round(delay.percentile(50) / 1e6, 1), p99: round(delay.percentile(99) / 1e6, 1), max: round(delay.max / 1e6, 1) },
          },
          requestsInWindow,
          storedLines: stored,
          problems,
        };
      } finally {
        clearInterval(sampler);
      }
    }

    const benchStarted = process.hrtime.bigint();
    const baseline = await runPhase('baseline', 1, 1, 0);
    const fanout = await runPhase('fan-out', options.followers, options.connections, options.lateAfterEvents);
    const durationSeconds = Math.round(Number(process.hrtime.bigint() - benchStarted) / 1e7) / 100;

    const ratio = (a: number, b: number) => (b > 0 ? round(a / b, 2) : null);
    const upstreamsOf = (p: PhaseReport) => p.upstreams.maxInWindow - p.upstreams.before;
    const modelsRequests = (p: PhaseReport) => p.requestsInWindow['models'] ?? 0;
    const ratios = {
      description: 'fan-out / baseline',
      latencyP50: ratio(fanout.client.latency.p50, baseline.client.latency.p50),
      latencyP99: ratio(fanout.client.latency.p99, baseline.client.latency.p99),
      upstreams: ratio(upstreamsOf(fanout), upstreamsOf(baseline)),
      modelsSubgraphRequests: ratio(modelsRequests(fanout), modelsRequests(baseline)),
      eventsPerSecond: ratio(fanout.client.eventsPerSecond, baseline.client.eventsPerSecond),
      platformRssGrowthMiB: round(
        fanout.platform.rssPeakMiB - fanout.platform.memoryBefore.rssMiB - (baseline.platform.rssPeakMiB - baseline.platform.memoryBefore.rssMiB),
        1,
      ),
      /** That growth per follower (the fan-out phase's followers less the baseline's one), KiB. */
      platformRssPerFollowerKiB: 0,
    };
    ratios.platformRssPerFollowerKiB = options.followers > 1 ? round((ratios.platformRssGrowthMiB * 1024) / (options.followers - 1), 1) : 0;

    const report = {
      ...benchEnvironment('subscriptions', command),
      database: options.embedded ? 'pglite' : 'postgresql',
      operation: JOB_LOGS,
      options: { ...options, out: path.relative(process.cwd(), options.out) },
      job: { examples, epochs: 1, stepMs: options.stepMs, linesPerSecond: round(1000 / options.stepMs, 1), note: 'cancelled after the window' },
      gatewayConfig: {
        maxPerConnection: defaults.maxPerConnection,
        maxPerUser: Math.max(defaults.maxPerUser, options.followers + 10),
        maxQueuedEvents: options.maxQueuedEvents ?? defaults.maxQueuedEvents,
      },
      definitions: {
        latency: 'per line and follower, lines stamped (`time`, by the agent, ms precision) inside the window: receipt in the client process − time, ms',
        spread: 'per upstream event (distinct nextOffset) with lines in the window: last follower’s receipt − first follower’s, ms',
        eventsPerSecond: 'events received by all followers together inside the window / window seconds',
        upstreams:
          'gatewaySharedSubscriptions(): before the followers subscribed, when all had joined, the max sampled every 100 ms in the window, after they went',
        requestsInWindow: 'HTTP requests this process sent during the window, by target (undici diagnostics channel); models = the hydrations’ entity fetches',
        platformMemory: 'the platform process (gateway, every subgraph, the agent, PGlite when embedded): RSS and heap used, MiB',
      },
      baseline,
      fanout,
      ratios,
      setupSeconds,
      durationSeconds,
    };

    // A figure that could not be measured (no line in the window) is NaN here, null once it came through IPC.
    const f = (x: number | null) => (x === null || Number.isNaN(x) ? '-' : x.toFixed(x < 10 ? 2 : 1));
    const header = [
      'phase',
      'followers',
      'conns',
      'join s',
      'upstreams',
      'lat p50 ms',
      'lat p90',
      'lat p99',
      'spread p50',
      'spread p99',
      'events/s',
      'lines/s',
      'models req',
      'RSS before',
      'RSS peak',
      'RSS after',
      'heap before',
      'heap after GC',
      'cores',
      'loop p99',
    ];
    const rows = [baseline, fanout].map((p) => [
      p.name,
      String(p.client.followers),
      String(p.client.connections),
      (p.client.joinMs / 1000).toFixed(2),
      String(upstreamsOf(p)),
      f(p.client.latency.p50),
      f(p.client.latency.p90),
      f(p.client.latency.p99),
      p.client.spread ? f(p.client.spread.p50) : '-',
      p.client.spread ? f(p.client.spread.p99) : '-',
      String(p.client.eventsPerSecond),
      String(p.client.linesPerSecond),
      String(modelsRequests(p)),
      p.platform.memoryBefore.rssMiB.toFixed(0),
      p.platform.rssPeakMiB.toFixed(0),
      p.platform.memoryAfterClose.rssMiB.toFixed(0),
      p.platform.memoryBefore.heapUsedMiB.toFixed(0),
      p.platform.memoryAfterGc.heapUsedMiB.toFixed(0),
      `${p.platform.cpuCoresInWindow.toFixed(2)}+${p.client.client.cpuCoresInWindow.toFixed(2)}`,
      f(p.platform.eventLoopDelayMs.p99),
    ]);
    const x = (r: number | null) => (r === null ? '-' : `×${r.toFixed(2)}`);
    const ratioHeader = [
      'fan-out / baseline',
      'lat p50',
      'lat p99',
      'upstreams',
      'models req',
      'events/s',
      'RSS growth (MiB, fan-out − baseline)',
      'per follower (KiB)',
    ];
    const ratioRows = [
      [
        '',
        x(ratios.latencyP50),
        x(ratios.latencyP99),
        x(ratios.upstreams),
        x(ratios.modelsSubgraphRequests),
        x(ratios.eventsPerSecond),
        ratios.platformRssGrowthMiB.toFixed(1),
        ratios.platformRssPerFollowerKiB.toFixed(1),
      ],
    ];
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
    const problems = [baseline, fanout].flatMap((p) => p.problems.map((problem) => `${p.name}: ${problem}`));
    const markdown = [
      '# Subscription fan-out (jobLogs)',
      '',
      `Produced by \`${command}\` on ${report.date}.`,
      '',
      `- Node ${report.node}, ${report.cpu.model} (${report.cpu.cores} cores), ${report.os}; database ${report.database}`,
      `- One fine-tuning job per phase (demo trainer, ${options.stepMs} ms per step: ~${report.job.linesPerSecond} lines/s; the agent sends them in batches 100 ms apart), ` +
        `followed with \`jobLogs\` (lines with time, job.baseModel from the models subgraph) over graphql-ws through the gateway, all followers with the admin key and the same variables`,
      ...(options.lateAfterEvents > 0
        ? [
            `- Late joiners: in the fan-out phase one follower subscribed first, the other ${options.followers - 1} once it had received ${options.lateAfterEvents} events (gateway maxQueuedEvents ${report.gatewayConfig.maxQueuedEvents})`,
          ]
        : []),
      `- Window: ${options.measureSeconds} s once every follower had its first event; latency = receipt − the line's \`time\` (agent's stamp), lines stamped in the window`,
      `- Followers in a child process; the platform (gateway, subgraphs, agent) in this one; one machine. Setup ${setupSeconds} s, run ${durationSeconds} s`,
      `- Checks: ${problems.length ? problems.join('; ') : 'every follower saw every line once, in order, and completed; one upstream per phase; none left after'}`,
      '',
      'cores: CPU of the platform process + the client process during the window; loop p99: the platform’s event-loop delay, ms; RSS and heap used in MiB ' +
        '(platform process; after: once the followers went; after GC: then a forced full collection):',
      '',
      ...mdTable(header, rows, 1),
      '',
      ...mdTable(ratioHeader, ratioRows, 1),
      '',
    ].join('\n');

    mkdirSync(path.dirname(options.out), { recursive: true });
    writeFileSync(options.out, `${JSON.stringify(report, null, 2)}\n`);
    const mdPath = options.out.replace(/\.json$/, '') + '.md';
    writeFileSync(mdPath, markdown);
    console.log(`\n${textTable(header, rows, 1)}\n\n${textTable(ratioHeader, ratioRows, 1)}\n`);
    for (const problem of problems) log(`PROBLEM: ${problem}`);
    log(`wrote ${path.relative(process.cwd(), options.out)} and ${path.relative(process.cwd(), mdPath)} (setup ${setupSeconds} s, run ${durationSeconds} s)`);
  } finally {
    diagnosticsChannel.unsubscribe('undici:request:create', onRequest);
    await cleanUp();
  }
}

if (process.env[CLIENT_ENV] === '1') {
  clientMain().catch((error: unknown) => {
    console.error('bench client failed:', error);
    process.exit(1);
  });
} else {
  runBench(main);
}
