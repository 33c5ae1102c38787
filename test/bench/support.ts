import os from 'node:os';
import { parseArgs, type ParseArgsConfig } from 'node:util';
/** Shared by the benchmarks: their error kinds and how a run ends. */

/** Bad command-line options. */
export class UsageError extends Error {}

/** The benchmark saw something wrong (an error response, wrong bytes) and stopped: its figures would lie. */
export class BenchAbort extends Error {}

/** Runs a benchmark's main and exits 0, or 1 with a one-line reason for a usage error or an abort. */
export function runBench(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (error: unknown) => {
      if (error instanceof UsageError || error instanceof BenchAbort) console.error(`bench aborted: ${error.message}`);
      else console.error('bench failed:', error);
      process.exit(1);
    },
  );
}

/** Latency figures of one path: milliseconds (nearest rank), and requests per second over its wall time. */
export interface LatencyStats {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
  /** Requests per second over the wall time of this path's blocks. */
  requestsPerSecond: number;
}

export function latencyStats(samplesNs: bigint[], wallNs: bigint): LatencyStats {
  const ms = samplesNs.map((ns) => Number(ns) / 1e6).sort((a, b) => a - b);
  const at = (q: number) => ms[Math.max(0, Math.ceil(q * ms.length) - 1)]!; // nearest rank
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return {
    count: ms.length,
    p50: round(at(0.5)),
    p90: round(at(0.9)),
    p99: round(at(0.99)),
    mean: round(ms.reduce((a, b) => a + b, 0) / ms.length),
    min: round(ms[0]!),
    max: round(ms[ms.length - 1]!),
    requestsPerSecond: Math.round((ms.length / (Number(wallNs) / 1e9)) * 10) / 10,
  };
}

/** A benchmark's command line: strict (no unknown flags, no positionals); a bad one is a UsageError listing `usage`. */
export function parseBenchArgs<const O extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: O, usage: string) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new UsageError(`${(error as Error).message}\n  options: ${usage}`);
  }
}

/** An integer flag's value, at least `min`; a UsageError naming the flag otherwise. */
export function intOption(name: string, text: string, min: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer ≥ ${min}, got ${text}`);
  return n;
}

/** What every benchmark's report starts with: which, how it was run, and on what machine. */
export function benchEnvironment(benchmark: string, command: string) {
  const cpus = os.cpus();
  return {
    benchmark,
    command,
    date: new Date().toISOString(),
    node: process.version,
    cpu: { model: cpus[0]?.model ?? 'unknown', cores: cpus.length },
    os: `${os.type()} ${os.release()} ${os.arch()}`,
  };
}
