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
