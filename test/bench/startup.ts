/**
 * Start time and idle memory of `mariner up`, compiled and from sources (`npm run bench:startup`).
 *
 *   npx tsx test/bench/startup.ts                       every mode, 5 starts each
 *   npx tsx test/bench/startup.ts --runs 3 --modes compiled,tsx --idle-ms 10000
 *   npx tsx test/bench/startup.ts --runs 5 --modes compiled,compiled:/path/to/an/older/dist   before/after
 *
 * Modes (each a real child process on a fresh port, with the user's environment less MARINER_*):
 *   tsx       node --import tsx bin/mariner.ts up         (how `npm start` ran before the compiled build)
 *   compiled  node --enable-source-maps dist/bin/mariner.js up   (how `npm start` runs it now)
 *   npm       npm start                                    (the whole command a user types: npm, the
 *                                                          up-to-date check of scripts/build.mjs, then compiled)
 *   compiled:DIR  node --enable-source-maps DIR/bin/mariner.js up   (another build, e.g. a copy of dist/ from
 *                                                          before a change: DIR inside the project, so that
 *                                                          its imports find node_modules)
 * Each mode gets its own data dir: one first start (PGlite's initdb, reported apart), then `--runs`
 * starts on the kept data, as a user's second and later `npm start`. The modes take turns (one start of
 * each, then the next round), so that a machine busy with other work weighs on each mode alike.
 *
 * Measured per start: milliseconds from spawn to the banner's "Mariner is up" line on stdout; CPU
 * seconds the process tree used until then (user + system, from /proc: less sensitive to a busy machine
 * than the wall clock); after `--idle-ms` idle, the RSS of the process tree (VmRSS of the process and
 * every descendant). The last start of each mode also reports where the memory is: the V8 heap, external
 * and array buffers (process.memoryUsage() from a probe loaded with --import, taken on SIGUSR2), and the
 * resident memory by mapping (/proc/<pid>/smaps: WebAssembly and the V8 heap are anonymous, native
 * libraries are named). Results: bench-results/startup.json and startup.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const RESULTS = path.join(ROOT, 'bench-results');
const PROBE = pathToFileURL(fileURLToPath(new URL('./memoryProbe.mjs', import.meta.url))).href;
const CLOCK_TICKS = 100; // _SC_CLK_TCK on Linux

type Mode = 'tsx' | 'compiled' | 'npm' | `compiled:${string}`;
const COMMANDS: Record<'tsx' | 'compiled' | 'npm', { command: string; args: string[] }> = {
  tsx: { command: process.execPath, args: ['--import', 'tsx', 'bin/mariner.ts', 'up'] },
  compiled: { command: process.execPath, args: ['--enable-source-maps', 'dist/bin/mariner.js', 'up'] },
  npm: { command: 'npm', args: ['start', '--silent'] },
};

function commandOf(mode: Mode): { command: string; args: string[] } {
  if (mode.startsWith('compiled:')) {
    return { command: process.execPath, args: ['--enable-source-maps', path.join(mode.slice('compiled:'.length), 'bin/mariner.js'), 'up'] };
  }
  return COMMANDS[mode as keyof typeof COMMANDS];
}

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    modes: { type: 'string', default: 'tsx,compiled,npm' },
    'idle-ms': { type: 'string', default: '10000' },
  },
});
const runs = Number(values.runs);
const idleMs = Number(values['idle-ms']);
const modes = values.modes!.split(',') as Mode[];
for (const mode of modes) if (!mode.startsWith('compiled:') && !COMMANDS[mode as keyof typeof COMMANDS]) throw new Error(`unknown mode ${mode}`);

function userEnv(settings: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('MARINER_') || key.startsWith('npm_') || key === 'DATABASE_URL' || key === 'NODE_ENV' || key === 'NODE_OPTIONS') continue;
    env[key] = value;
  }
  return { ...env, ...settings };
}

/** The pid and every descendant's, from /proc. */
function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone meanwhile
    }
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]!) ?? []));
  return tree;
}

function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
    } catch {
      // gone meanwhile
    }
  }
  return ticks / CLOCK_TICKS;
}

function rssMiB(pids: number[]): number {
  let kib = 0;
  for (const pid of pids) {
    try {
      const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      kib += Number(match?.[1] ?? 0);
    } catch {
      // gone meanwhile
    }
  }
  return kib / 1024;
}

/** The node process that runs mariner (npm start: the descendant whose command line names dist/bin/mariner.js). */
function marinerPid(pid: number): number {
  for (const candidate of processTree(pid)) {
    try {
      const [command, ...args] = readFileSync(`/proc/${candidate}/cmdline`, 'utf8').split('\0');
      if (path.basename(command!) === 'node' && args.some((arg) => /bin\/mariner\.[jt]s$/.test(arg))) return candidate;
    } catch {
      // gone meanwhile
    }
  }
  return pid;
}

/** Resident memory by mapping, in MiB, largest first: `[anon]` is V8's heap, WebAssembly memory and native allocations. */
function rssByMapping(pid: number): Array<[string, number]> {
  const sizes = new Map<string, number>();
  let current = '';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const header = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (header) {
      const name = header[1]!.trim();
      current = name === '' ? '[anon]' : name.startsWith('/') ? (path.relative(ROOT, name).startsWith('..') ? name : path.relative(ROOT, name)) : name;
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) sizes.set(current, (sizes.get(current) ?? 0) + Number(rss[1]) / 1024);
  }
  return [...sizes.entries()].sort((a, b) => b[1] - a[1]).filter(([, mib]) => mib >= 1);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Start {
  readyMs: number;
  bannerMs: number;
  cpuSecondsToReady: number;
  idleRssMiB: number;
  memory?: Record<string, unknown>;
  mappings?: Array<[string, number]>;
}

async function start(mode: Mode, dataDir: string, detail: boolean): Promise<Start> {
  const { command, args } = commandOf(mode);
  const probeFile = path.join(dataDir, `memory-${Date.now()}.json`);
  const started = performance.now();
  const child: ChildProcess = spawn(command, args, {
    cwd: ROOT,
    env: userEnv({
      MARINER_DATA_DIR: dataDir,
      MARINER_PORT: '0',
      MARINER_LOG_LEVEL: 'warn',
      ...(detail ? { NODE_OPTIONS: `--import ${PROBE}`, MARINER_BENCH_MEMORY_FILE: probeFile } : {}),
    }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const readyMs = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${mode}: no banner within 120 s\n${stdout}\n${stderr}`)), 120_000);
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      if (/Mariner is up \(\d+ ms/.test(stdout)) {
        clearTimeout(timer);
        resolve(performance.now() - started);
      }
    });
    void exited.then(() => reject(new Error(`${mode}: exited before the banner\n${stdout}\n${stderr}`)));
  });
  const cpuSecondsToReady = cpuSeconds(processTree(child.pid!));
  const bannerMs = Number(/Mariner is up \((\d+) ms/.exec(stdout)![1]);
  await sleep(idleMs);
  const idleRssMiB = rssMiB(processTree(child.pid!));
  const result: Start = { readyMs: Math.round(readyMs), bannerMs, cpuSecondsToReady, idleRssMiB: Math.round(idleRssMiB) };
  if (detail) {
    const pid = marinerPid(child.pid!);
    process.kill(pid, 'SIGUSR2');
    for (let i = 0; i < 50; i++) {
      try {
        result.memory = JSON.parse(readFileSync(probeFile, 'utf8')) as Record<string, unknown>;
        break;
      } catch {
        await sleep(100);
      }
    }
    result.mappings = rssByMapping(pid)
      .slice(0, 15)
      .map(([name, mib]) => [name, Math.round(mib)]);
  }
  // Ctrl-C's effect: SIGINT to mariner itself (npm does not pass a signal sent to it alone on to its script).
  process.kill(marinerPid(child.pid!), 'SIGINT');
  await exited;
  return result;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

async function main(): Promise<void> {
  const log = (line: string) => process.stderr.write(`${line}\n`);
  // The compiled modes need dist/ current: build it (if needed) outside the timed region.
  if (modes.some((mode) => mode !== 'tsx')) {
    await new Promise<void>((resolve, reject) =>
      spawn(process.execPath, ['scripts/build.mjs'], { cwd: ROOT, stdio: 'inherit' }).once('close', (code) =>
        code === 0 ? resolve() : reject(new Error('build failed')),
      ),
    );
  }
  const results: Record<string, { first: Start; starts: Start[]; median: { readyMs: number; cpuSecondsToReady: number; idleRssMiB: number } }> = {};
  const dataDirs = new Map(modes.map((mode) => [mode, mkdtempSync(path.join(tmpdir(), `mariner-bench-startup-${mode.replace(/\W/g, '-')}-`))]));
  const firsts = new Map<Mode, Start>();
  const starts = new Map<Mode, Start[]>(modes.map((mode) => [mode, []]));
  try {
    for (const mode of modes) {
      const first = await start(mode, dataDirs.get(mode)!, false);
      firsts.set(mode, first);
      log(`${mode}: first start (initdb) ready in ${first.readyMs} ms, ${first.cpuSecondsToReady.toFixed(2)} s CPU, idle RSS ${first.idleRssMiB} MiB`);
    }
    for (let i = 0; i < runs; i++) {
      for (const mode of modes) {
        const one = await start(mode, dataDirs.get(mode)!, i === runs - 1);
        starts.get(mode)!.push(one);
        log(
          `${mode}: start ${i + 1} ready in ${one.readyMs} ms (banner ${one.bannerMs} ms), ${one.cpuSecondsToReady.toFixed(2)} s CPU, idle RSS ${one.idleRssMiB} MiB`,
        );
      }
    }
  } finally {
    for (const dataDir of dataDirs.values()) rmSync(dataDir, { recursive: true, force: true });
  }
  for (const mode of modes) {
    const all = starts.get(mode)!;
    results[mode] = {
      first: firsts.get(mode)!,
      starts: all,
      median: {
        readyMs: median(all.map((s) => s.readyMs)),
        cpuSecondsToReady: median(all.map((s) => s.cpuSecondsToReady)),
        idleRssMiB: median(all.map((s) => s.idleRssMiB)),
      },
    };
  }
  const environment = {
    node: process.version,
    cpus: cpus().length,
    loadavgAtEnd: loadavg().map((l) => Number(l.toFixed(2))),
    runs,
    idleMs,
    date: new Date().toISOString(),
  };
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(path.join(RESULTS, 'startup.json'), `${JSON.stringify({ environment, results }, null, 2)}\n`);
  const lines = [
    `# mariner up: start time and idle memory (${environment.node}, ${environment.cpus} CPUs, load ${environment.loadavgAtEnd.join(' ')})`,
    '',
    '| mode | first start (initdb) | ready, median (min–max) | CPU s to ready, median | idle RSS MiB, median (min–max) |',
    '| --- | --- | --- | --- | --- |',
    ...Object.entries(results).map(([mode, r]) => {
      const ready = r.starts.map((s) => s.readyMs);
      const rss = r.starts.map((s) => s.idleRssMiB);
      return `| ${mode} | ${r.first.readyMs} ms | ${r.median.readyMs} ms (${Math.min(...ready)}–${Math.max(...ready)}) | ${r.median.cpuSecondsToReady.toFixed(2)} | ${r.median.idleRssMiB} (${Math.min(...rss)}–${Math.max(...rss)}) |`;
    }),
    '',
  ];
  for (const [mode, r] of Object.entries(results)) {
    const last = r.starts.at(-1)!;
    if (!last.mappings) continue;
    lines.push(
      `## ${mode}: where the idle memory is (last start)`,
      '',
      '```',
      JSON.stringify(last.memory, null, 1),
      '```',
      '',
      '| mapping | RSS MiB |',
      '| --- | --- |',
    );
    for (const [name, mib] of last.mappings) lines.push(`| ${name} | ${mib} |`);
    lines.push('');
  }
  writeFileSync(path.join(RESULTS, 'startup.md'), `${lines.join('\n')}\n`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
