import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
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

// ---------------------------------------------------------------------------------------------
// Processes, read from Linux /proc (proc(5)): what a benchmark measures of a server it runs apart.

let clockTicks: number | undefined;

/** Ticks per second of utime and stime in /proc/<pid>/stat (`getconf CLK_TCK`, asked once; 100 on every Linux seen so far). */
export function clockTicksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** The fields of /proc/<pid>/stat from the state on (field 3 of proc(5) is [0]); null when the process is gone. */
function statFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** CPU time (user + system, proc(5) fields 14 and 15) a process has used so far, ms; null when it is gone. */
export function processCpuMs(pid: number): number | null {
  const fields = statFields(pid);
  return fields ? ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicksPerSecond() : null;
}

/** The processes below `pid`: its children, their children, and so on (those alive now). */
export function descendantPids(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const ppid = Number(statFields(Number(entry))?.[1]);
    if (Number.isInteger(ppid)) children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
  }
  const found: number[] = [];
  for (let queue = [pid]; queue.length > 0;) {
    const next = children.get(queue.shift()!) ?? [];
    found.push(...next);
    queue.push(...next);
  }
  return found;
}

/** A process's command line as argv; [] when it is gone. */
export function processArgv(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      .split('\0')
      .filter((arg) => arg !== '');
  } catch {
    return [];
  }
}

/**
 * The TCP ports a process listens on: its sockets (the `socket:[inode]` links in /proc/<pid>/fd) matched
 * with the LISTEN rows (state 0A) of /proc/<pid>/net/tcp and tcp6. What finds a server started with
 * `--port 0` when only its process is known.
 */
export function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match) inodes.add(match[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const ports = new Set<number>();
  for (const table of ['tcp', 'tcp6']) {
    let text = '';
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
      const columns = line.trim().split(/\s+/);
      if (columns[3] === '0A' && inodes.has(columns[9]!)) ports.add(parseInt(columns[1]!.split(':')[1]!, 16));
    }
  }
  return [...ports].sort((a, b) => a - b);
}

// ---------------------------------------------------------------------------------------------
// A streamed chat completion (OpenAI API: chat streaming), read as it arrives.

export interface StreamedCompletion {
  status: number;
  contentType: string | null;
  /** Arrival of each chunk with non-empty `delta.content`, ns after the request started. */
  contentAtNs: bigint[];
  /** The request start → the end of the body, ns. */
  totalNs: bigint;
  text: string;
  sawDone: boolean;
  /** What was wrong with the stream (a non-200 body, an error event, bytes after [DONE]), if anything. */
  problem: string | null;
}

/** POSTs `body` (a chat completion request with `stream: true`) and parses the SSE as it arrives; `onBytes` hears each read's size. */
export async function streamChatCompletion(
  url: string,
  headers: Record<string, string>,
  body: string,
  signal: AbortSignal,
  onBytes: (n: number) => void = () => undefined,
): Promise<StreamedCompletion> {
  const start = process.hrtime.bigint();
  const response = await fetch(url, { method: 'POST', headers, body, signal });
  const reply: StreamedCompletion = {
    status: response.status,
    contentType: response.headers.get('content-type'),
    contentAtNs: [],
    totalNs: 0n,
    text: '',
    sawDone: false,
    problem: null,
  };
  if (response.status !== 200 || !response.body) {
    reply.problem = `HTTP ${response.status} ${(await response.text()).slice(0, 500)}`;
    reply.totalNs = process.hrtime.bigint() - start;
    return reply;
  }
  const note = (problem: string) => (reply.problem ??= problem);
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const bytes of response.body as unknown as AsyncIterable<Uint8Array>) {
    const at = process.hrtime.bigint() - start;
    onBytes(bytes.length);
    buffer += decoder.decode(bytes, { stream: true });
    for (let boundary = buffer.indexOf('\n\n'); boundary !== -1; boundary = buffer.indexOf('\n\n')) {
      const event = buffer.slice(0, boundary);
      buffer = buffer.slice(boundary + 2);
      const data = event
        .split('\n')
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).trimStart())
        .join('\n');
      if (data === '') continue;
      if (reply.sawDone) {
        note(`an event after [DONE]: ${data.slice(0, 300)}`);
        continue;
      }
      if (data === '[DONE]') {
        reply.sawDone = true;
        continue;
      }
      let chunk: { error?: unknown; choices?: { delta?: { content?: unknown } }[] };
      try {
        chunk = JSON.parse(data) as typeof chunk;
      } catch {
        note(`an event that is not JSON: ${data.slice(0, 300)}`);
        continue;
      }
      if (chunk.error !== undefined) {
        note(`an error event: ${JSON.stringify(chunk.error).slice(0, 500)}`);
        continue;
      }
      const content = chunk.choices?.[0]?.delta?.content;
      if (typeof content === 'string' && content !== '') {
        reply.contentAtNs.push(at);
        reply.text += content;
      }
    }
  }
  reply.totalNs = process.hrtime.bigint() - start;
  buffer += decoder.decode();
  if (buffer.trim() !== '') note(`the body ended inside an event: ${JSON.stringify(buffer.slice(0, 300))}`);
  return reply;
}

/** Why a streamed reply does not count (HTTP, content type, no content, no `data: [DONE]`), or null when it is good. */
export function streamProblem(reply: StreamedCompletion): string | null {
  if (reply.problem) return reply.problem;
  if (!reply.contentType?.startsWith('text/event-stream')) return `content-type ${reply.contentType}, not text/event-stream`;
  if (reply.contentAtNs.length === 0) return 'no content chunk';
  if (!reply.sawDone) return 'the stream ended without data: [DONE]';
  return null;
}

// ---------------------------------------------------------------------------------------------
// Reports

/** A table as aligned text for the terminal; columns before `left` are text (left-aligned), the others figures. */
export function textTable(head: string[], rows: string[][], left: number): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < left ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** The same table in Markdown, one line per row. */
export function markdownTable(head: string[], rows: string[][], left: number): string[] {
  return [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i < left ? '---' : '---:')).join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
}
