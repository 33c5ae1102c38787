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
 * Writes bench-results/batches.{json,md}.
 *
 *   --lines N         requests in the batch (default 1000)
 *   --interactive N   interactive requests measured alone (default 100; while the batch runs, as many as fit)
 *   --max-tokens T    max_tokens of every request (default 8)
 *   --rate R          interactive requests started per second, one at a time (default 10)
 *   --per-batch C     requests of the batch running at once (default: the platform's, 4)
 *   --per-tenant C    requests of the tenant's batches running at once (default: the platform's, 8)
 *   --embedded        PGlite instead of a fresh PostgreSQL database
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI, { toFile } from 'openai';
import { DEMO_MODEL_ID } from '../../bin/demoModel.js';
import { loadConfig } from '../../lib/config.js';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { BenchAbort, benchEnvironment, intOption, latencyStats, markdownTable, parseBenchArgs, runBench, type LatencyStats } from './support.js';

const RESULTS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench-results');
const USAGE = '--lines N --interactive N --max-tokens T --rate R --per-batch C --per-tenant C --embedded';

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
      embedded: { type: 'boolean', default: false },
    },
    USAGE,
  );
  const lines = intOption('lines', values.lines, 1);
  const interactive = intOption('interactive', values.interactive, 1);
  const maxTokens = intOption('max-tokens', values['max-tokens'], 1);
  const intervalMs = 1000 / intOption('rate', values.rate, 1);
  /** Waits until the next interactive request is due (one every intervalMs from `since`; none skipped, none bunched). */
  const paced = async (since: number, i: number) => {
    const wait = since + i * intervalMs - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  };
  const defaults = loadConfig({}).batches;
  const perBatch = values['per-batch'] ? intOption('per-batch', values['per-batch'], 1) : defaults.concurrencyPerBatch;
  const perTenant = values['per-tenant'] ? intOption('per-tenant', values['per-tenant'], perBatch) : Math.max(defaults.concurrencyPerTenant, perBatch);
  const command = `npm run bench:batches${argv.length ? ` -- ${argv.join(' ')}` : ''}`;
  const log = (line: string) => process.stderr.write(`${line}\n`);

  log(`starting the platform with the demo model (${values.embedded ? 'PGlite' : 'PostgreSQL'}), batches ${perBatch} at once (tenant ${perTenant})…`);
  let t: TestPlatform | undefined;
  try {
    t = await startTestPlatform({
      embedded: values.embedded,
      defaultCluster: true,
      demoModel: true,
      config: { batches: { concurrencyPerBatch: perBatch, concurrencyPerTenant: perTenant, pollIntervalMs: 100 } },
    });
    const sdk = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0, timeout: 300_000 });
    // The first request activates the demo model and waits for its runtime; then a few to warm up.
    for (let i = 0; i < 10; i++) await timedChat(sdk, maxTokens, -i);

    log(`alone: ${interactive} interactive chat completions…`);
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
    const aloneStats = latencyStats(alone, process.hrtime.bigint() - aloneStarted);

    log(`with batch: a ${lines}-line batch, and interactive chat completions until it ends…`);
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
    const duringStats: LatencyStats = latencyStats(during, ended - duringStarted);
    const batchSeconds = Number(ended - created) / 1e9;
    const throughput = Math.round((lines / batchSeconds) * 100) / 100;
    const p50Change = Math.round((duringStats.p50 / aloneStats.p50 - 1) * 1000) / 10;

    const report = {
      ...benchEnvironment('batches', command),
      settings: {
        lines,
        maxTokens,
        interactivePerSecond: 1000 / intervalMs,
        concurrencyPerBatch: perBatch,
        concurrencyPerTenant: perTenant,
        database: values.embedded ? 'PGlite' : 'PostgreSQL',
      },
      batch: {
        id: finished.id,
        requestCounts: finished.request_counts,
        seconds: Math.round(batchSeconds * 100) / 100,
        linesPerSecond: throughput,
      },
      interactive: {
        alone: aloneStats,
        whileBatchRuns: duringStats,
        failed: { alone: failedAlone, whileBatchRuns: failures.length - failedAlone, lastError: failures.at(-1) ?? null },
        p50ChangePercent: p50Change,
        withinTwentyPercent: p50Change <= 20,
      },
    };
    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(path.join(RESULTS_DIR, 'batches.json'), `${JSON.stringify(report, null, 2)}\n`);
    const md = [
      `# Batch API benchmark`,
      '',
      `\`${command}\` — ${report.date}, Node ${report.node}, ${report.cpu.cores} × ${report.cpu.model}, ${report.settings.database}.`,
      `The demo model (node-llama-cpp, random weights), max_tokens ${maxTokens}; interactive requests one at a time, ${1000 / intervalMs} per second; the batch runs ${perBatch} requests at once (tenant cap ${perTenant}).`,
      '',
      `Batch: ${lines} lines in ${report.batch.seconds} s: **${throughput} lines/s** (${finished.request_counts?.completed} completed, ${finished.request_counts?.failed} failed).`,
      '',
      ...markdownTable(
        ['interactive chat', 'requests', 'p50 ms', 'p90 ms', 'p99 ms', 'mean ms'],
        [
          ['alone', String(aloneStats.count), String(aloneStats.p50), String(aloneStats.p90), String(aloneStats.p99), String(aloneStats.mean)],
          [
            'while the batch runs',
            String(duringStats.count),
            String(duringStats.p50),
            String(duringStats.p90),
            String(duringStats.p99),
            String(duringStats.mean),
          ],
        ],
        1,
      ),
      '',
      `Interactive p50 while the batch runs: ${p50Change >= 0 ? '+' : ''}${p50Change}% (target: within 20%).` +
        (failures.length > 0
          ? ` Interactive requests that failed (not measured): ${failedAlone} alone, ${failures.length - failedAlone} while the batch ran.`
          : ''),
      '',
    ].join('\n');
    writeFileSync(path.join(RESULTS_DIR, 'batches.md'), md);
    process.stdout.write(md);
  } finally {
    await t?.close();
  }
}

runBench(main);
