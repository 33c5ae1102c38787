/**
 * Batch API benchmark (`npm run bench:batches`, options after `--`).
 *
 * The whole platform as `mariner up --demo-model` runs it (the embedded agent, the demo model's
 * node-llama-cpp runtime, PostgreSQL or PGlite), driven with the official `openai` SDK:
 *   - alone:      --interactive chat completions (`max_tokens` --max-tokens), one at a time, started
 *                 --rate per second (as interactive users send them, not back to back), nothing else
 *                 running: their latency (request → whole answer);
 *   - with batch: a --lines-line batch of the same chat completion is created, and the same sequential
 *                 chat completions run while it does (until it ends): their latency, and the batch's
 *                 throughput (lines / seconds from its creation until it is seen completed).
 * The batch's concurrency is the platform's settings (MARINER_BATCH_CONCURRENCY_PER_BATCH, ..._PER_TENANT;
 * --per-batch and --per-tenant set them here). The issue's target: interactive p50 within 20% of alone.
 * Each mode of --modes is a fresh platform measured both ways, in turn, in this one run:
 *   - yield:    the platform's default, a batch's requests sent as `batch` priority (lib/requestPriority.ts:
 *               the runtime starts one only while no interactive request waits or generates);
 *   - no-yield: MARINER_BATCH_YIELD_TO_INTERACTIVE off, every request served first come first served
 *               (what the platform did before).
 * Writes bench-results/batches.{json,md}.
 *
 *   --lines N         requests in the batch (default 1000)
 *   --interactive N   interactive requests measured alone (default 100; while the batch runs, as many as fit)
 *   --max-tokens T    max_tokens of every request (default 8)
 *   --rate R          interactive requests started per second, one at a time (default 10)
 *   --per-batch C     requests of the batch running at once (default: the platform's, 4)
 *   --per-tenant C    requests of the tenant's batches running at once (default: the platform's, 8)
 *   --modes M,...     yield, no-yield or both (default no-yield,yield)
 *   --rounds N        each mode N times, the order reversed every other round (default 1); the figures
 *                     pool the rounds' requests (the machine's load drifts: alternating spreads it evenly)
 *   --embedded        PGlite instead of a fresh PostgreSQL database
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI, { toFile } from 'openai';
import { DEMO_MODEL_ID } from '../../bin/demoModel.js';
import { loadConfig } from '../../lib/config.js';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { BenchAbort, benchEnvironment, intOption, latencyStats, markdownTable, parseBenchArgs, runBench, UsageError, type LatencyStats } from './support.js';

const RESULTS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench-results');
const USAGE = '--lines N --interactive N --max-tokens T --rate R --per-batch C --per-tenant C --modes yield,no-yield --rounds N --embedded';
const MODES = ['no-yield', 'yield'] as const;
type Mode = (typeof MODES)[number];

function chatBody(maxTokens: number, content: string) {
  return { model: DEMO_MODEL_ID, max_tokens: maxTokens, temperature: 0, messages: [{ role: 'user' as const, content }] };
}

/** One interactive chat completion, timed from the request to the whole answer (ns). */
async function timedChat(sdk: OpenAI, maxTokens: number, i: number): Promise<bigint> {
  const started = process.hrtime.bigint();
  const answer = await sdk.chat.completions.create(chatBody(maxTokens, `interactive ${i}`));
  if (!answer.choices[0]) throw new BenchAbort(`an interactive request answered no choice: ${JSON.stringify(answer).slice(0, 200)}`);
  return process.hrtime.bigint() - started;
}

interface Settings {
  lines: number;
  interactive: number;
  maxTokens: number;
  intervalMs: number;
  perBatch: number;
  perTenant: number;
  embedded: boolean;
}

/** One round of one mode, as measured. */
interface ModeRun {
  mode: Mode;
  alone: bigint[];
  aloneWallNs: bigint;
  during: bigint[];
  duringWallNs: bigint;
  batchSeconds: number;
  requestCounts: OpenAI.Batches.Batch['request_counts'];
  failedAlone: number;
  failedDuring: number;
  lastError: string | null;
}

interface ModeResult {
  mode: Mode;
  rounds: number;
  batch: { requestCounts: { completed: number; failed: number }; seconds: number; linesPerSecond: number };
  interactive: {
    alone: LatencyStats;
    whileBatchRuns: LatencyStats;
    failed: { alone: number; whileBatchRuns: number; lastError: string | null };
    p50ChangePercent: number;
    withinTwentyPercent: boolean;
  };
}

/** The rounds of one mode, pooled: latencies over all their requests, throughput over all their lines. */
function pooled(mode: Mode, runs: ModeRun[], lines: number): ModeResult {
  const sum = (f: (r: ModeRun) => number) => runs.reduce((total, r) => total + f(r), 0);
  const alone = latencyStats(
    runs.flatMap((r) => r.alone),
    runs.reduce((total, r) => total + r.aloneWallNs, 0n),
  );
  const during = latencyStats(
    runs.flatMap((r) => r.during),
    runs.reduce((total, r) => total + r.duringWallNs, 0n),
  );
  const seconds = sum((r) => r.batchSeconds);
  const p50Change = Math.round((during.p50 / alone.p50 - 1) * 1000) / 10;
  return {
    mode,
    rounds: runs.length,
    batch: {
      requestCounts: { completed: sum((r) => r.requestCounts?.completed ?? 0), failed: sum((r) => r.requestCounts?.failed ?? 0) },
      seconds: Math.round(seconds * 100) / 100,
      linesPerSecond: Math.round(((lines * runs.length) / seconds) * 100) / 100,
    },
    interactive: {
      alone,
      whileBatchRuns: during,
      failed: {
        alone: sum((r) => r.failedAlone),
        whileBatchRuns: sum((r) => r.failedDuring),
        lastError:
          runs
            .map((r) => r.lastError)
            .filter(Boolean)
            .at(-1) ?? null,
      },
      p50ChangePercent: p50Change,
      withinTwentyPercent: p50Change <= 20,
    },
  };
}

/** One mode: a fresh platform, interactive requests alone, then while a batch runs. */
async function measure(mode: Mode, settings: Settings, log: (line: string) => void): Promise<ModeRun> {
  const { lines, interactive, maxTokens, intervalMs, perBatch, perTenant, embedded } = settings;
  /** Waits until the next interactive request is due (one every intervalMs from `since`; none skipped, none bunched). */
  const paced = async (since: number, i: number) => {
    const wait = since + i * intervalMs - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  };
  log(`[${mode}] starting the platform with the demo model (${embedded ? 'PGlite' : 'PostgreSQL'}), batches ${perBatch} at once (tenant ${perTenant})…`);
  let t: TestPlatform | undefined;
  try {
    t = await startTestPlatform({
      embedded,
      defaultCluster: true,
      demoModel: true,
      config: {
        batches: { concurrencyPerBatch: perBatch, concurrencyPerTenant: perTenant, pollIntervalMs: 100, yieldToInteractive: mode === 'yield' },
      },
    });
    const sdk = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0, timeout: 300_000 });
    // The first request activates the demo model and waits for its runtime; then a few to warm up.
    for (let i = 0; i < 10; i++) await timedChat(sdk, maxTokens, -i);

    log(`[${mode}] alone: ${interactive} interactive chat completions…`);
    const aloneStarted = process.hrtime.bigint();
    const aloneSince = Date.now();
    const alone: bigint[] = [];
    const failures: string[] = [];
    /** A failed interactive request is counted and reported, not measured (the runtime may refuse one under load). */
    const measured = async (i: number): Promise<bigint | null> =>
      timedChat(sdk, maxTokens, i).catch((error: unknown) => {
        failures.push((error as Error).message);
        if (failures.length > 20) throw new BenchAbort(`too many interactive requests failed: ${failures.slice(-3).join('; ')}`);
        return null;
      });
    for (let i = 0; i < interactive; i++) {
      await paced(aloneSince, i);
      const latency = await measured(i);
      if (latency !== null) alone.push(latency);
    }
    const failedAlone = failures.length;
    const aloneWallNs = process.hrtime.bigint() - aloneStarted;

    log(`[${mode}] with batch: a ${lines}-line batch, and interactive chat completions until it ends…`);
    const jsonl = Array.from({ length: lines }, (_, i) =>
      JSON.stringify({ custom_id: `line-${i}`, method: 'POST', url: '/v1/chat/completions', body: chatBody(maxTokens, `batch line ${i}`) }),
    ).join('\n');
    const input = await sdk.files.create({ file: await toFile(Buffer.from(jsonl), 'bench.jsonl'), purpose: 'batch' });
    const created = process.hrtime.bigint();
    const batch = await sdk.batches.create({ input_file_id: input.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    let done: OpenAI.Batches.Batch | null = null;
    let ended = 0n;
    let stopWatching = false;
    // Watches the batch until it ends (or the run stops); its failure is the run's, once the loop below ends.
    const watch = (async () => {
      while (!stopWatching) {
        const now = await sdk.batches.retrieve(batch.id);
        if (['completed', 'failed', 'expired', 'cancelled'].includes(now.status)) {
          ended = process.hrtime.bigint();
          done = now;
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();
    const during: bigint[] = [];
    const duringStarted = process.hrtime.bigint();
    const duringSince = Date.now();
    let watchFailed = false;
    watch.catch(() => (watchFailed = true));
    try {
      for (let i = 0; !done && !watchFailed; i++) {
        await paced(duringSince, i);
        if (done) break;
        const latency = await measured(interactive + i);
        if (!done && latency !== null) during.push(latency);
      }
    } finally {
      stopWatching = true;
    }
    await watch;
    const finished = done as OpenAI.Batches.Batch | null;
    if (!finished || finished.status !== 'completed') throw new BenchAbort(`the batch ended ${finished?.status}: ${JSON.stringify(finished).slice(0, 400)}`);
    if (during.length === 0) throw new BenchAbort('no interactive request finished while the batch ran');
    return {
      mode,
      alone,
      aloneWallNs,
      during,
      duringWallNs: ended - duringStarted,
      batchSeconds: Number(ended - created) / 1e9,
      requestCounts: finished.request_counts,
      failedAlone,
      failedDuring: failures.length - failedAlone,
      lastError: failures.at(-1) ?? null,
    };
  } finally {
    await t?.close();
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const values = parseBenchArgs(
    argv,
    {
      lines: { type: 'string', default: '1000' },
      interactive: { type: 'string', default: '100' },
      'max-tokens': { type: 'string', default: '8' },
      rate: { type: 'string', default: '10' },
      'per-batch': { type: 'string' },
      'per-tenant': { type: 'string' },
      modes: { type: 'string', default: MODES.join(',') },
      rounds: { type: 'string', default: '1' },
      embedded: { type: 'boolean', default: false },
    },
    USAGE,
  );
  const modes = values.modes.split(',').map((m) => m.trim());
  for (const mode of modes) if (!(MODES as readonly string[]).includes(mode)) throw new UsageError(`--modes: "${mode}" is not one of ${MODES.join(', ')}`);
  const defaults = loadConfig({}).batches;
  const perBatch = values['per-batch'] ? intOption('per-batch', values['per-batch'], 1) : defaults.concurrencyPerBatch;
  const settings: Settings = {
    lines: intOption('lines', values.lines, 1),
    interactive: intOption('interactive', values.interactive, 1),
    maxTokens: intOption('max-tokens', values['max-tokens'], 1),
    intervalMs: 1000 / intOption('rate', values.rate, 1),
    perBatch,
    perTenant: values['per-tenant'] ? intOption('per-tenant', values['per-tenant'], perBatch) : Math.max(defaults.concurrencyPerTenant, perBatch),
    embedded: values.embedded,
  };
  const command = `npm run bench:batches${argv.length ? ` -- ${argv.join(' ')}` : ''}`;
  const log = (line: string) => process.stderr.write(`${line}\n`);

  const rounds = intOption('rounds', values.rounds, 1);
  const runs: ModeRun[] = [];
  const report = (runs: ModeRun[]) => write(settings, rounds, command, modes as Mode[], runs);
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? modes : [...modes].reverse();
    for (const mode of order as Mode[]) {
      runs.push(await measure(mode, settings, log));
      // What is measured so far is written at once: a later round that fails does not lose it.
      report(runs);
    }
  }
  process.stdout.write(report(runs));
}

/** Writes bench-results/batches.{json,md} from the runs so far (each mode's rounds pooled); the markdown. */
function write(settings: Settings, rounds: number, command: string, modes: Mode[], runs: ModeRun[]): string {
  const results = modes
    .filter((mode) => runs.some((r) => r.mode === mode))
    .map((mode) =>
      pooled(
        mode,
        runs.filter((r) => r.mode === mode),
        settings.lines,
      ),
    );

  const report = {
    ...benchEnvironment('batches', command),
    settings: {
      lines: settings.lines,
      maxTokens: settings.maxTokens,
      interactivePerSecond: 1000 / settings.intervalMs,
      concurrencyPerBatch: settings.perBatch,
      concurrencyPerTenant: settings.perTenant,
      database: settings.embedded ? 'PGlite' : 'PostgreSQL',
      rounds,
    },
    modes: results,
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(path.join(RESULTS_DIR, 'batches.json'), `${JSON.stringify(report, null, 2)}\n`);
  const signed = (x: number) => `${x >= 0 ? '+' : ''}${x}%`;
  const md = [
    `# Batch API benchmark`,
    '',
    `\`${command}\` — ${report.date}, Node ${report.node}, ${report.cpu.cores} × ${report.cpu.model}, ${report.settings.database}.`,
    `The demo model (node-llama-cpp, random weights), max_tokens ${settings.maxTokens}; interactive requests one at a time, ${report.settings.interactivePerSecond} per second; a ${settings.lines}-line batch running ${settings.perBatch} requests at once (tenant cap ${settings.perTenant}). Each mode on a fresh platform per round, ${runs.length} runs of ${rounds} round${rounds > 1 ? 's' : ''} (the order reversed every other round), in one run; figures pool the rounds.`,
    '',
    ...markdownTable(
      ['mode', 'batch lines/s', 'interactive', 'requests', 'p50 ms', 'p90 ms', 'p99 ms', 'mean ms', 'p50 change', 'failed'],
      results.flatMap((r) => {
        const { alone, whileBatchRuns: during, failed } = r.interactive;
        return [
          [r.mode, '', 'alone', String(alone.count), String(alone.p50), String(alone.p90), String(alone.p99), String(alone.mean), '', String(failed.alone)],
          [
            r.mode,
            String(r.batch.linesPerSecond),
            'while the batch runs',
            String(during.count),
            String(during.p50),
            String(during.p90),
            String(during.p99),
            String(during.mean),
            signed(r.interactive.p50ChangePercent),
            String(failed.whileBatchRuns),
          ],
        ];
      }),
      2,
    ),
    '',
    ...results.map(
      (r) =>
        `- ${r.mode}: ${settings.lines * r.rounds} lines in ${r.batch.seconds} s (**${r.batch.linesPerSecond} lines/s**, ${r.batch.requestCounts?.completed} completed, ${r.batch.requestCounts?.failed} failed); interactive p50 while it runs ${signed(r.interactive.p50ChangePercent)} (target: within 20%).`,
    ),
    '',
  ].join('\n');
  writeFileSync(path.join(RESULTS_DIR, 'batches.md'), md);
  return md;
}

runBench(main);
