// @ts-check
// Loaded with `node --import` by test/bench/startup.ts: on SIGUSR2, writes where this process's memory
// is (process.memoryUsage() and V8's heap spaces, in MiB) to MARINER_BENCH_MEMORY_FILE. Not part of Mariner.
import { writeFileSync } from 'node:fs';
import { getHeapSpaceStatistics } from 'node:v8';

const file = process.env.MARINER_BENCH_MEMORY_FILE;
const mib = (/** @type {number} */ bytes) => Math.round(bytes / 1048576);
if (file) {
  process.on('SIGUSR2', () => {
    const usage = process.memoryUsage();
    const spaces = Object.fromEntries(getHeapSpaceStatistics().map((space) => [space.space_name, mib(space.space_used_size)]));
    writeFileSync(
      file,
      JSON.stringify({
        rss: mib(usage.rss),
        heapTotal: mib(usage.heapTotal),
        heapUsed: mib(usage.heapUsed),
        external: mib(usage.external),
        arrayBuffers: mib(usage.arrayBuffers),
        heapSpacesUsed: spaces,
      }),
    );
  });
}
