/**
 * Upload benchmark (`npm run bench:upload`, options after `--`).
 *
 * `mariner up` runs as a child process (embedded PGlite, filesystem object store, a fresh temp data
 * dir), so what is measured is the server's memory, not this client's. In each round a 1 GiB file
 * goes through `POST /v1/files` as multipart/form-data twice, once with `purpose` before the file part
 * and once after it; each time it is downloaded again from `GET /v1/files/{id}/content` and compared by
 * SHA-256 with what was sent, then deleted. The client generates the body as a stream (1 MiB chunks, waiting
 * for 'drain' whenever `write()` says so): no 1 GiB buffer exists on either side unless the server
 * makes one.
 *
 * The server's VmRSS (and RssAnon) is read from /proc/<pid>/status every --sample-ms during each
 * upload and download. Per phase: the baseline (median over one idle second before it), the peak
 * (the larger of the sampled peak and VmHWM, which is reset through /proc/<pid>/clear_refs before each
 * phase where the kernel allows it), the growth (peak − baseline) and the slope of RSS against the
 * bytes moved so far (MiB of RSS per GiB transferred: near 0 when streaming, near 1024 when something
 * holds the file). Writes bench-results/upload.{json,md}. Any wrong answer aborts the run.
 *
 *   --size-mib N    file size in MiB (default 1024; the default shrinks, with a note, when the temp
 *                   folder's disk has less than size + 1 GiB free)
 *   --rounds N      rounds of both orders, the order reversed every other round (default 2)
 *   --sample-ms N   RSS sampling interval (default 100)
 *
 * Linux only (/proc). The client shares the machine's cores with the server: on a small machine its
 * generating and hashing (about one core at these rates) holds the throughput figures down.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { BenchAbort, benchEnvironment, intOption, parseBenchArgs, runBench, UsageError } from './support.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const RESULTS_DIR = path.join(ROOT, 'bench-results');
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const CHUNK_BYTES = MiB;
const DEFAULT_SIZE_MIB = 1024;
/** Free space kept beyond the file itself (PGlite, logs, the filesystem's own needs). */
const DISK_MARGIN_BYTES = GiB;
/** Large enough that the garbage of the start-up is collected before the baseline is taken. */
const WARMUP_BYTES = 64 * MiB;
/** A fresh PGlite takes several seconds to initialise (more on a loaded machine). */
const START_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 15_000;
const FILENAME = 'big.bin';
const PURPOSE = 'user_data';

type Order = 'purpose-first' | 'file-first';
const ORDERS: Order[] = ['purpose-first', 'file-first'];

interface Options {
  sizeMiB: number;
  sizeExplicit: boolean;
  sampleMs: number;
  rounds: number;
}

const CLI_OPTIONS = {
  'size-mib': { type: 'string' },
  'sample-ms': { type: 'string', default: '100' },
  rounds: { type: 'string', default: '2' },
} as const;

function parseOptions(argv: string[]): Options {
  const values = parseBenchArgs(argv, CLI_OPTIONS, `--size-mib N --rounds N --sample-ms N`);
  return {
    sizeMiB: values['size-mib'] === undefined ? DEFAULT_SIZE_MIB : intOption('size-mib', values['size-mib'], 1),
    sizeExplicit: values['size-mib'] !== undefined,
    sampleMs: intOption('sample-ms', values['sample-ms'], 10),
    rounds: intOption('rounds', values.rounds, 1),
  };
}

const log = (line: string) => process.stderr.write(`${line}\n`);
const mib = (bytes: number) => Math.round((bytes / MiB) * 10) / 10;
const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// The server: `mariner up` in a child process.

interface Server {
  child: ChildProcess;
  pid: number;
  url: URL;
  adminKey: string;
  startMs: number;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
}

/** The environment of a user's shell with the bench's settings: no MARINER_*, DATABASE_URL or NODE_ENV of ours. */
function serverEnv(settings: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('MARINER_') || key === 'DATABASE_URL' || key === 'NODE_ENV' || key === 'NODE_OPTIONS') continue;
    env[key] = value;
  }
  return { ...env, ...settings };
}

async function startServer(dataDir: string, maxFileBytes: number): Promise<Server> {
  const started = performance.now();
  const child = spawn(process.execPath, ['--import', 'tsx', 'bin/mariner.ts', 'up'], {
    cwd: ROOT,
    env: serverEnv({
      MARINER_DATA_DIR: dataDir,
      MARINER_PORT: '0',
      MARINER_LOG_LEVEL: 'warn',
      MARINER_MAX_FILE_BYTES: String(maxFileBytes),
    }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  // Keep the last 64 KiB of stderr (warnings, a crash) for error messages.
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-64 * 1024)));
  const server: Server = {
    child,
    pid: child.pid ?? -1,
    url: new URL('http://127.0.0.1'),
    adminKey: '',
    startMs: 0,
    stdout: () => stdout,
    stderr: () => stderr,
    exit: undefined,
    exited: new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code, signal) => {
        server.exit = { code, signal };
        resolve(server.exit);
      });
    }),
  };
  server.exited.catch(() => undefined);
  const output = () => `\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`;
  const banner = /Admin API key \(shown once[^\n]*\n\s*(sk-[A-Za-z0-9_-]+)\n/;
  await new Promise<void>((resolve, reject) => {
    const check = () => {
      if (banner.test(stdout)) finish(resolve);
    };
    const onClose = (code: number | null, signal: NodeJS.Signals | null) =>
      finish(() => reject(new BenchAbort(`mariner exited (code ${code}, signal ${signal}) before its banner${output()}`)));
    const onError = (error: Error) => finish(() => reject(error));
    const timer = setTimeout(() => finish(() => reject(new BenchAbort(`no banner within ${START_TIMEOUT_MS} ms${output()}`))), START_TIMEOUT_MS);
    const finish = (settle: () => void) => {
      clearTimeout(timer);
      child.stdout!.off('data', check);
      child.off('close', onClose);
      child.off('error', onError);
      settle();
    };
    child.stdout!.on('data', check);
    child.once('close', onClose);
    child.once('error', onError);
    check();
  });
  const url = stdout.match(/GraphQL:\s+(http:\/\/127\.0\.0\.1:\d+)\/graphql/)?.[1];
  if (!url) throw new BenchAbort(`no GraphQL URL in the banner${output()}`);
  server.url = new URL(url);
  server.adminKey = stdout.match(banner)![1]!;
  server.startMs = Math.round(performance.now() - started);
  return server;
}

/** SIGINT (as Ctrl-C), then SIGKILL if it is still running after STOP_TIMEOUT_MS. */
async function stopServer(server: Server): Promise<{ code: number | null; signal: NodeJS.Signals | null; killed: boolean }> {
  if (server.exit) return { ...server.exit, killed: false };
  server.child.kill('SIGINT');
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    server.exited.then(() => false),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), STOP_TIMEOUT_MS))),
  ]);
  clearTimeout(timer);
  if (!timedOut) return { ...server.exit!, killed: false };
  server.child.kill('SIGKILL');
  const exit = await server.exited;
  return { ...exit, killed: true };
}

// ---------------------------------------------------------------------------------------------
// The server's memory, from /proc.

interface Mem {
  rss: number;
  anon: number;
  hwm: number;
}

function readMem(pid: number): Mem | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const bytes = (name: string) => {
    const match = text.match(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm'));
    return match ? Number(match[1]) * 1024 : Number.NaN;
  };
  return { rss: bytes('VmRSS'), anon: bytes('RssAnon'), hwm: bytes('VmHWM') };
}

/** Resets VmHWM to the current RSS (Linux ≥ 4.0, same user); false where the kernel refuses. */
function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** The idle memory before a phase: the median of samples over `ms`. */
async function idleBaseline(pid: number, ms: number, intervalMs: number): Promise<Mem> {
  const samples: Mem[] = [];
  for (let waited = 0; ; waited += intervalMs) {
    const m = readMem(pid);
    if (!m) throw new BenchAbort(`the server (pid ${pid}) is gone`);
    samples.push(m);
    if (waited >= ms) break;
    await sleep(intervalMs);
  }
  return { rss: median(samples.map((s) => s.rss)), anon: median(samples.map((s) => s.anon)), hwm: samples.at(-1)!.hwm };
}

interface Sample {
  ms: number;
  /** Bytes moved so far (sent by the client during an upload, received during a download). */
  bytes: number;
  rss: number;
  anon: number;
}

interface MemSummary {
  baselineMiB: number;
  /** max(sampled peak, VmHWM during the phase when it could be reset). */
  peakMiB: number;
  growthMiB: number;
  sampledPeakMiB: number;
  /** VmHWM at the end of the phase, reset just before it; null where /proc/<pid>/clear_refs refused. */
  hwmPeakMiB: number | null;
  anonBaselineMiB: number;
  anonPeakMiB: number;
  anonGrowthMiB: number;
  /** RSS at the end of the phase. */
  endMiB: number;
  /** Least-squares slope of RSS against bytes moved: ≈ 0 when streaming, ≈ 1024 when the file is held. */
  slopeMiBPerGiB: number;
  samples: number;
}

class Sampler {
  readonly samples: Sample[] = [];
  private readonly started = performance.now();
  private readonly timer: NodeJS.Timeout;
  readonly peakReset: boolean;

  constructor(
    private readonly pid: number,
    intervalMs: number,
    private readonly progress: () => number,
    private readonly baseline: Mem,
  ) {
    this.peakReset = resetPeak(pid);
    this.take();
    this.timer = setInterval(() => this.take(), intervalMs);
  }

  private take(): void {
    const m = readMem(this.pid);
    if (m) this.samples.push({ ms: Math.round(performance.now() - this.started), bytes: this.progress(), rss: m.rss, anon: m.anon });
  }

  stop(): MemSummary {
    clearInterval(this.timer);
    this.take();
    const end = readMem(this.pid);
    const sampledPeak = Math.max(...this.samples.map((s) => s.rss));
    const hwm = this.peakReset && end ? end.hwm : null;
    const peak = Math.max(sampledPeak, hwm ?? 0);
    const anonPeak = Math.max(...this.samples.map((s) => s.anon));
    return {
      baselineMiB: mib(this.baseline.rss),
      peakMiB: mib(peak),
      growthMiB: mib(peak - this.baseline.rss),
      sampledPeakMiB: mib(sampledPeak),
      hwmPeakMiB: hwm === null ? null : mib(hwm),
      anonBaselineMiB: mib(this.baseline.anon),
      anonPeakMiB: mib(anonPeak),
      anonGrowthMiB: mib(anonPeak - this.baseline.anon),
      endMiB: mib(this.samples.at(-1)!.rss),
      slopeMiBPerGiB: round(slope(this.samples.map((s) => [s.bytes / GiB, s.rss / MiB] as const))),
      samples: this.samples.length,
    };
  }
}

function slope(points: (readonly [number, number])[]): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

// ---------------------------------------------------------------------------------------------
// The content: 1 MiB of random bytes, with each 64 KiB block stamped with its offset in the file, so
// that a repeated, dropped or reordered block changes the hash.

function createContent() {
  const base = randomBytes(CHUNK_BYTES);
  return (offset: number, length: number): Buffer => {
    const chunk = Buffer.allocUnsafe(length);
    base.copy(chunk, 0, 0, length);
    for (let p = 0; p + 8 <= length; p += 64 * 1024) chunk.writeBigUInt64LE(BigInt(offset + p), p);
    return chunk;
  };
}

// ---------------------------------------------------------------------------------------------
// HTTP: node:http, a fresh connection per request (agent: false).

interface OpenAIFile {
  id: string;
  object: string;
  bytes: number;
  filename: string;
  purpose: string;
  status: string;
}

interface UploadResult {
  file: OpenAIFile;
  sha256: string;
  /** From the first byte written to the last byte handed to the socket. */
  bodySentSeconds: number;
  /** From the first byte written to the end of the response. */
  seconds: number;
}

/**
 * POST /v1/files with a hand-built multipart body whose file part is generated as it is written, with
 * backpressure. `progress` is updated as bytes of the file are written.
 */
function upload(server: Server, size: number, order: Order, progress: { bytes: number }): Promise<UploadResult> {
  const boundary = `----MarinerBench${randomBytes(16).toString('hex')}`;
  const purposePart = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n${PURPOSE}\r\n`);
  const fileHead = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${FILENAME}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
  );
  const closing = Buffer.from(`--${boundary}--\r\n`);
  const crlf = Buffer.from('\r\n');
  const before = order === 'purpose-first' ? [purposePart, fileHead] : [fileHead];
  const after = order === 'purpose-first' ? [crlf, closing] : [crlf, purposePart, closing];
  const contentLength = [...before, ...after].reduce((n, b) => n + b.length, size);
  const content = createContent();
  const hash = createHash('sha256');

  return new Promise<UploadResult>((resolve, reject) => {
    const started = performance.now();
    let sentAt: number | undefined;
    let responded = false;
    const req = http.request({
      agent: false,
      host: server.url.hostname,
      port: server.url.port,
      path: '/v1/files',
      method: 'POST',
      headers: {
        authorization: `Bearer ${server.adminKey}`,
        'content-type': `multipart/form-data; boundary=${boundary}`,
        'content-length': String(contentLength),
      },
    });
    req.on('error', (error) => reject(new BenchAbort(`upload (${order}): ${error.message}`)));
    req.on('finish', () => (sentAt = performance.now()));
    req.on('response', (res) => {
      responded = true;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const done = performance.now();
        if (res.statusCode !== 200) {
          reject(new BenchAbort(`upload (${order}): HTTP ${res.statusCode} after ${mib(progress.bytes)} MiB sent: ${text.slice(0, 500)}`));
          return;
        }
        if (sentAt === undefined) {
          reject(new BenchAbort(`upload (${order}): the server answered 200 before the whole body was sent: ${text.slice(0, 500)}`));
          return;
        }
        let file: OpenAIFile;
        try {
          file = JSON.parse(text) as OpenAIFile;
        } catch {
          reject(new BenchAbort(`upload (${order}): non-JSON response: ${text.slice(0, 500)}`));
          return;
        }
        resolve({ file, sha256: hash.digest('hex'), bodySentSeconds: (sentAt - started) / 1000, seconds: (done - started) / 1000 });
      });
    });

    const gone = () => responded || req.destroyed;
    const write = (buffer: Buffer): Promise<void> => {
      if (req.write(buffer)) return Promise.resolve();
      return new Promise<void>((resolveDrain) => {
        const done = () => {
          req.off('drain', done);
          req.off('close', done);
          resolveDrain();
        };
        req.on('drain', done);
        req.on('close', done);
      });
    };
    void (async () => {
      for (const part of before) await write(part);
      for (let offset = 0; offset < size; offset += CHUNK_BYTES) {
        if (gone()) return; // answered early (an error) or failed: the response handler reports it
        const chunk = content(offset, Math.min(CHUNK_BYTES, size - offset));
        hash.update(chunk);
        progress.bytes = offset + chunk.length;
        await write(chunk);
      }
      for (const part of after) {
        if (gone()) return;
        await write(part);
      }
      req.end();
    })().catch(reject);
  });
}

interface DownloadResult {
  sha256: string;
  bytes: number;
  firstByteSeconds: number;
  seconds: number;
}

/** GET /v1/files/{id}/content, hashed as it streams. */
function download(server: Server, id: string, size: number, progress: { bytes: number }): Promise<DownloadResult> {
  return new Promise<DownloadResult>((resolve, reject) => {
    const started = performance.now();
    const req = http.get(
      {
        agent: false,
        host: server.url.hostname,
        port: server.url.port,
        path: `/v1/files/${encodeURIComponent(id)}/content`,
        headers: { authorization: `Bearer ${server.adminKey}` },
      },
      (res) => {
        const firstByte = performance.now();
        if (res.statusCode !== 200) {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => reject(new BenchAbort(`download: HTTP ${res.statusCode}: ${Buffer.concat(chunks).toString('utf8').slice(0, 500)}`)));
          return;
        }
        if (res.headers['content-length'] !== String(size)) {
          res.destroy();
          reject(new BenchAbort(`download: content-length ${res.headers['content-length']}, expected ${size}`));
          return;
        }
        const hash = createHash('sha256');
        res.on('data', (chunk: Buffer) => {
          hash.update(chunk);
          progress.bytes += chunk.length;
        });
        res.on('error', (error) => reject(new BenchAbort(`download: ${error.message}`)));
        res.on('aborted', () => reject(new BenchAbort(`download: aborted after ${progress.bytes} bytes`)));
        res.on('end', () =>
          resolve({
            sha256: hash.digest('hex'),
            bytes: progress.bytes,
            firstByteSeconds: (firstByte - started) / 1000,
            seconds: (performance.now() - started) / 1000,
          }),
        );
      },
    );
    req.on('error', (error) => reject(new BenchAbort(`download: ${error.message}`)));
  });
}

async function restCall(server: Server, method: string, pathname: string): Promise<{ status: number; body: any }> {
  const response = await fetch(new URL(pathname, server.url), { method, headers: { authorization: `Bearer ${server.adminKey}` } });
  const text = await response.text();
  try {
    return { status: response.status, body: JSON.parse(text) };
  } catch {
    throw new BenchAbort(`${method} ${pathname}: non-JSON response (HTTP ${response.status}): ${text.slice(0, 300)}`);
  }
}

/** Deletes the file, then checks it is gone. */
async function deleteFile(server: Server, id: string): Promise<void> {
  const deleted = await restCall(server, 'DELETE', `/v1/files/${encodeURIComponent(id)}`);
  if (deleted.status !== 200 || deleted.body?.deleted !== true) {
    throw new BenchAbort(`DELETE /v1/files/${id}: HTTP ${deleted.status} ${JSON.stringify(deleted.body).slice(0, 300)}`);
  }
  const after = await restCall(server, 'GET', `/v1/files/${encodeURIComponent(id)}`);
  if (after.status !== 404) throw new BenchAbort(`GET /v1/files/${id} after the delete: HTTP ${after.status}, expected 404`);
}

/** Every plain file under the object store's folder (objects and temp files alike). */
function filesUnder(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(full) : [full];
  });
}

// ---------------------------------------------------------------------------------------------

interface RunResult {
  round: number;
  order: Order;
  fileId: string;
  sha256: string;
  upload: { seconds: number; bodySentSeconds: number; mibPerSecond: number; rss: MemSummary; rssSamples: Sample[] };
  download: { seconds: number; firstByteSeconds: number; mibPerSecond: number; rss: MemSummary; rssSamples: Sample[] };
}

/** One upload (RSS sampled), its checks, the download (RSS sampled), its checks, the delete. */
async function run(server: Server, size: number, order: Order, sampleMs: number, roundNo: number | null): Promise<RunResult> {
  const measured = roundNo !== null;
  const tag = measured ? `round ${roundNo}, ${order}` : `warm-up, ${order}`;
  const upProgress = { bytes: 0 };
  const upBaseline = await idleBaseline(server.pid, measured ? 1000 : 0, sampleMs);
  const upSampler = new Sampler(server.pid, sampleMs, () => upProgress.bytes, upBaseline);
  let up: UploadResult;
  let upRss: MemSummary;
  try {
    up = await upload(server, size, order, upProgress);
  } finally {
    upRss = upSampler.stop();
  }
  const { file } = up;
  const expected = { object: 'file', bytes: size, filename: FILENAME, purpose: PURPOSE };
  for (const [key, value] of Object.entries(expected)) {
    if ((file as unknown as Record<string, unknown>)[key] !== value) {
      throw new BenchAbort(
        `upload (${tag}): ${key} is ${JSON.stringify((file as unknown as Record<string, unknown>)[key])}, expected ${JSON.stringify(value)}: ${JSON.stringify(file)}`,
      );
    }
  }
  if (typeof file.id !== 'string' || !file.id) throw new BenchAbort(`upload (${tag}): no id in ${JSON.stringify(file)}`);
  if (measured) log(`  ${tag}: uploaded ${mib(size)} MiB in ${up.seconds.toFixed(2)} s as ${file.id}; RSS +${upRss.growthMiB} MiB`);

  const downProgress = { bytes: 0 };
  const downBaseline = await idleBaseline(server.pid, measured ? 1000 : 0, sampleMs);
  const downSampler = new Sampler(server.pid, sampleMs, () => downProgress.bytes, downBaseline);
  let down: DownloadResult;
  let downRss: MemSummary;
  try {
    down = await download(server, file.id, size, downProgress);
  } finally {
    downRss = downSampler.stop();
  }
  if (down.bytes !== size) throw new BenchAbort(`download (${tag}): ${down.bytes} bytes, expected ${size}`);
  if (down.sha256 !== up.sha256) throw new BenchAbort(`download (${tag}): sha256 ${down.sha256} differs from what was sent (${up.sha256})`);
  if (measured) log(`  ${tag}: downloaded in ${down.seconds.toFixed(2)} s, sha256 matches; RSS +${downRss.growthMiB} MiB`);

  await deleteFile(server, file.id);
  return {
    round: roundNo ?? 0,
    order,
    fileId: file.id,
    sha256: up.sha256,
    upload: {
      seconds: round(up.seconds, 3),
      bodySentSeconds: round(up.bodySentSeconds, 3),
      mibPerSecond: round(size / MiB / up.seconds),
      rss: upRss,
      rssSamples: upSampler.samples,
    },
    download: {
      seconds: round(down.seconds, 3),
      firstByteSeconds: round(down.firstByteSeconds, 3),
      mibPerSecond: round(size / MiB / down.seconds),
      rss: downRss,
      rssSamples: downSampler.samples,
    },
  };
}

/** The file size: as asked, or the default, shrunk to what the temp folder's disk can hold. */
function chooseSize(options: Options, dir: string): { size: number; freeBytes: number; note: string | null } {
  const stats = statfsSync(dir);
  const freeBytes = stats.bavail * stats.bsize;
  const wanted = options.sizeMiB * MiB;
  if (freeBytes >= wanted + DISK_MARGIN_BYTES) return { size: wanted, freeBytes, note: null };
  if (options.sizeExplicit) {
    throw new UsageError(`--size-mib ${options.sizeMiB} needs ${mib(wanted + DISK_MARGIN_BYTES)} MiB free in ${dir}; it has ${mib(freeBytes)} MiB`);
  }
  let sizeMiB = DEFAULT_SIZE_MIB;
  while (sizeMiB > 16 && freeBytes < sizeMiB * MiB + DISK_MARGIN_BYTES) sizeMiB /= 2;
  if (freeBytes < sizeMiB * MiB + DISK_MARGIN_BYTES) throw new UsageError(`${dir} has only ${mib(freeBytes)} MiB free`);
  return {
    size: sizeMiB * MiB,
    freeBytes,
    note: `${dir} had ${mib(freeBytes)} MiB free, too little for ${DEFAULT_SIZE_MIB} MiB + ${mib(DISK_MARGIN_BYTES)} MiB: ran with ${sizeMiB} MiB instead`,
  };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const options = parseOptions(argv);
  const command = `npm run bench:upload${argv.length ? ` -- ${argv.join(' ')}` : ''}`;
  if (process.platform !== 'linux') throw new UsageError('this benchmark reads /proc/<pid>/status: Linux only');
  const benchStarted = performance.now();

  const { size, freeBytes, note } = chooseSize(options, os.tmpdir());
  if (note) log(`note: ${note}`);
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'mariner-bench-upload-'));
  let server: Server | undefined;
  let closing: Promise<void> | undefined;
  const cleanUp = () =>
    (closing ??= (async () => {
      if (server) await stopServer(server).catch(() => undefined);
      rmSync(dataDir, { recursive: true, force: true });
    })());
  const onSignal = (signal: NodeJS.Signals) => {
    log(`\n${signal}: stopping the server and removing ${dataDir}…`);
    void cleanUp().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    log(`starting mariner up (PGlite, filesystem object store) in ${dataDir}…`);
    server = await startServer(dataDir, Math.max(2 * GiB, size));
    const afterStart = readMem(server.pid);
    if (!afterStart) throw new BenchAbort('the server is gone after its banner');
    log(`up in ${server.startMs} ms (pid ${server.pid}, RSS ${mib(afterStart.rss)} MiB); warm-up with ${mib(Math.min(WARMUP_BYTES, size))} MiB…`);
    for (const order of ORDERS) await run(server, Math.min(WARMUP_BYTES, size), order, options.sampleMs, null);
    const baseline = await idleBaseline(server.pid, 1000, options.sampleMs);
    log(`baseline RSS ${mib(baseline.rss)} MiB; ${mib(size)} MiB per upload, both part orders, ${options.rounds} round(s)…`);

    const runs: RunResult[] = [];
    for (let roundNo = 1; roundNo <= options.rounds; roundNo++) {
      // Each round reverses the order of the orders, so neither always goes first (see README: the first
      // large write on a machine can be much slower than the next).
      const orders = roundNo % 2 === 1 ? ORDERS : [...ORDERS].reverse();
      for (const order of orders) runs.push(await run(server, size, order, options.sampleMs, roundNo));
    }

    const leftovers = filesUnder(path.join(dataDir, 'objects'));
    if (leftovers.length) throw new BenchAbort(`files left in the object store after the deletes: ${leftovers.join(', ')}`);
    const final = readMem(server.pid);
    const stopped = await stopServer(server);
    if (stopped.killed || stopped.code !== 0) {
      log(`warning: the server did not exit cleanly on SIGINT (code ${stopped.code}, signal ${stopped.signal}${stopped.killed ? ', killed' : ''})`);
    }
    const durationSeconds = Math.round((performance.now() - benchStarted) / 100) / 10;

    const overallPeak = Math.max(...runs.flatMap((r) => [r.upload.rss.peakMiB, r.download.rss.peakMiB]));
    const report = {
      ...benchEnvironment('upload', command),
      memoryTotalMiB: mib(os.totalmem()),
      setup: 'mariner up as a child process: embedded PGlite, filesystem object store in a temp data dir; client in this process over loopback',
      sizeBytes: size,
      sizeMiB: mib(size),
      note,
      tempDirFreeMiB: mib(freeBytes),
      chunkBytes: CHUNK_BYTES,
      sampleIntervalMs: options.sampleMs,
      rounds: options.rounds,
      purpose: PURPOSE,
      filename: FILENAME,
      server: {
        startMs: server.startMs,
        rssAfterStartMiB: mib(afterStart.rss),
        baselineMiB: mib(baseline.rss),
        overallPeakMiB: overallPeak,
        overallGrowthMiB: round(overallPeak - mib(baseline.rss)),
        rssAtEndMiB: final ? mib(final.rss) : null,
        peakResetSupported: runs.every((r) => r.upload.rss.hwmPeakMiB !== null),
        exit: stopped,
      },
      runs,
      durationSeconds,
    };

    const rows = runs.flatMap((r) =>
      (['upload', 'download'] as const).map((phase) => {
        const p = r[phase];
        return [
          String(r.round),
          r.order,
          phase,
          p.seconds.toFixed(2),
          p.mibPerSecond.toFixed(1),
          p.rss.baselineMiB.toFixed(1),
          p.rss.peakMiB.toFixed(1),
          p.rss.growthMiB.toFixed(1),
          p.rss.anonGrowthMiB.toFixed(1),
          p.rss.slopeMiBPerGiB.toFixed(1),
        ];
      }),
    );
    const header = ['round', 'order', 'phase', 's', 'MiB/s', 'RSS base MiB', 'RSS peak MiB', 'growth MiB', 'anon growth MiB', 'MiB RSS / GiB'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]) => cells.map((c, i) => (i < 3 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
    const table = [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
    const maxGrowth = Math.max(...runs.flatMap((r) => [r.upload.rss.growthMiB, r.download.rss.growthMiB]));
    const range = (values: number[]) => {
      const lo = Math.min(...values);
      const hi = Math.max(...values);
      return lo === hi ? `${lo}` : `${lo}–${hi}`;
    };
    const byOrder = (phase: 'upload' | 'download') =>
      ORDERS.map((order) => `${range(runs.filter((r) => r.order === order).map((r) => r[phase].mibPerSecond))} (${order})`).join(', ');
    const summary =
      `${mib(size)} MiB: upload ${byOrder('upload')} MiB/s; download ${byOrder('download')} MiB/s; ` +
      `server RSS growth at most ${maxGrowth} MiB over the phase baselines (${round((maxGrowth / mib(size)) * 100)} % of the file)`;

    const markdown = [
      '# Upload through REST',
      '',
      `Produced by \`${command}\` on ${report.date}.`,
      '',
      `- Node ${report.node}, ${report.cpu.model} (${report.cpu.cores} cores), ${report.os}, ${report.memoryTotalMiB} MiB RAM`,
      `- ${report.setup}`,
      `- File: ${report.sizeMiB} MiB, ${options.rounds} round(s) of both part orders (\`${FILENAME}\`, purpose \`${PURPOSE}\`), generated and SHA-256-hashed by the client in ${CHUNK_BYTES / MiB} MiB chunks with backpressure; ` +
        'uploaded as multipart/form-data with `purpose` before the file part and after it (the order reversed every other round); ' +
        'each downloaded again and compared by SHA-256, then deleted',
      ...(note ? [`- **Note:** ${note}`] : []),
      `- Server: banner after ${server.startMs} ms, RSS ${report.server.rssAfterStartMiB} MiB after the start, ` +
        `${report.server.baselineMiB} MiB after a ${mib(Math.min(WARMUP_BYTES, size))} MiB warm-up upload/download of each order; ` +
        `RSS read from /proc/${'<pid>'}/status every ${options.sampleMs} ms` +
        (report.server.peakResetSupported ? ', peaks also from VmHWM reset before each phase' : ' (VmHWM could not be reset: sampled peaks only)'),
      `- Total ${durationSeconds} s`,
      '',
      '| round | order | phase | seconds | MiB/s | RSS baseline MiB | RSS peak MiB | growth MiB | RssAnon growth MiB | MiB RSS per GiB moved |',
      '|---|---|---|---:|---:|---:|---:|---:|---:|---:|',
      ...rows.map((r) => `| ${r.join(' | ')} |`),
      '',
      `**${summary}**`,
      '',
      'Upload seconds run from the first byte written to the end of the response (the server fsyncs the ' +
        'object and completes the upload before it answers); download seconds from the request to the last byte. ' +
        'Growth is the phase peak minus the idle median just before the phase; the last column is the slope of RSS ' +
        'against bytes moved (≈ 0 when streaming, ≈ 1024 if the file were held in memory; negative when a garbage ' +
        'collection released older memory during the phase).',
      '',
    ].join('\n');

    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(path.join(RESULTS_DIR, 'upload.json'), `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(path.join(RESULTS_DIR, 'upload.md'), markdown);

    console.log(`\n${table}\n\n${summary}\n`);
    log(`wrote ${path.relative(process.cwd(), RESULTS_DIR) || '.'}/upload.{json,md} (${durationSeconds} s)`);
  } catch (error) {
    if (server && !(error instanceof UsageError)) {
      const stderr = server.stderr().trim();
      if (stderr) log(`--- server stderr (last lines) ---\n${stderr.split('\n').slice(-30).join('\n')}`);
    }
    throw error;
  } finally {
    await cleanUp();
  }
}

runBench(main);
