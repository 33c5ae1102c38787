import type { Readable, Writable } from 'node:stream';
import WebSocket from 'ws';
import type { Context } from './config.js';
import { CliError } from './errors.js';

/**
 * The Kubernetes API of a cluster through the platform's `/v1/sessions/<cluster id>/...` (LLMariner
 * session manager): a GET of an object or a list, and exec into a pod's container over the WebSocket
 * remote command protocol (`v5.channel.k8s.io`, else `v4.channel.k8s.io`), as `kubectl exec` speaks it.
 * The caller's key and the context's organization and project travel as on every other request; TLS
 * trusts what Node trusts (NODE_EXTRA_CA_CERTS for a private CA), as the rest of the CLI does.
 *
 * Protocol (k8s.io/apimachinery pkg/util/remotecommand, KEP-4006 for v5): every binary message starts
 * with its channel: 0 stdin, 1 stdout, 2 stderr, 3 the command's Status (JSON), 4 the terminal's size
 * (JSON `{"Width","Height"}`); v5 adds 255 with a channel after it, closing that channel (stdin's EOF).
 */

/** Offered in this order: v5 can tell the command that stdin ended; v4 cannot. */
export const EXEC_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io'];

const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const STATUS = 3;
const RESIZE = 4;
const CLOSE = 255;

/** A Kubernetes Status (meta/v1), as the apiserver, the kubelet and /v1/sessions answer. */
interface KubeStatus {
  status?: string;
  message?: string;
  reason?: string;
  code?: number;
  details?: { causes?: { reason?: string; message?: string }[] };
}

/** /v1/sessions or the cluster refused: the HTTP status and the Status's message. */
export class SessionsRefusal extends CliError {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message, status === 403 ? 'FORBIDDEN' : status === 404 ? 'NOT_FOUND' : status === 401 ? 'UNAUTHENTICATED' : 'UNAVAILABLE');
    this.status = status;
  }
}

/** The command in the pod exited with a non-zero status: the CLI exits with it, as kubectl does. */
export class RemoteExit extends CliError {
  override readonly exitCode: number;
  constructor(exitCode: number) {
    super(`command terminated with exit code ${exitCode}`, 'EXIT_CODE');
    this.exitCode = exitCode;
  }
}

function headersOf(context: Context): Record<string, string> {
  const headers: Record<string, string> = { authorization: `Bearer ${context.apiKey}` };
  if (context.organization) headers['openai-organization'] = context.organization;
  if (context.project) headers['openai-project'] = context.project;
  return headers;
}

const sessionsUrl = (context: Context, clusterId: string, kubePath: string) => `${context.url}/v1/sessions/${encodeURIComponent(clusterId)}${kubePath}`;

function refusalOf(status: number, text: string): SessionsRefusal {
  try {
    const body = JSON.parse(text) as KubeStatus;
    if (body.message) return new SessionsRefusal(status, body.message);
  } catch {
    // not a Status: the text says it
  }
  return new SessionsRefusal(status, `HTTP ${status}${text ? `: ${text.slice(0, 200)}` : ''}`);
}

/** A GET of a Kubernetes API path (`/api/v1/...`) on the cluster; a refusal throws SessionsRefusal. */
export async function sessionsGet<T>(context: Context, clusterId: string, kubePath: string): Promise<T> {
  let response: Response;
  try {
    response = await fetch(sessionsUrl(context, clusterId, kubePath), { headers: { ...headersOf(context), accept: 'application/json' } });
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    throw new CliError(`cannot reach ${context.url}: ${cause?.code ?? cause?.message ?? (error as Error).message}`, 'UNREACHABLE');
  }
  const text = await response.text();
  if (response.status >= 400) throw refusalOf(response.status, text);
  return JSON.parse(text) as T;
}

export interface ExecRequest {
  clusterId: string;
  namespace: string;
  pod: string;
  /** The container; the pod's only one when absent. */
  container?: string | undefined;
  command: string[];
  /** Pass standard input to the command (`-i`). */
  stdin: boolean;
  /** A terminal for the command (`-t`): the local one in raw mode, its size sent on channel 4. */
  tty: boolean;
}

/** Where the command's streams come from and go: the process's own, or a test's. */
export interface ExecStreams {
  stdin: Readable & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  stdout: Writable & { columns?: number; rows?: number };
  stderr: Writable;
}

/** What a Status on channel 3 means: 0 on Success, the ExitCode cause's number on a non-zero exit (kubectl does the same). */
export function exitCodeOf(status: KubeStatus): number {
  if (status.status === 'Success') return 0;
  if (status.reason === 'NonZeroExitCode') {
    const cause = status.details?.causes?.find((c) => c.reason === 'ExitCode');
    const code = Number(cause?.message);
    if (Number.isInteger(code) && code > 0) return code;
  }
  throw new CliError(`exec failed: ${status.message ?? JSON.stringify(status)}`, status.reason ?? 'EXEC_FAILED');
}

/**
 * Runs `command` in the pod and resolves with its exit status (0: Success). A refused handshake throws
 * SessionsRefusal; a connection that ends without the command's status throws CONNECTION_LOST. With a
 * terminal, the local one is in raw mode until it returns or throws, and its size follows the terminal's (its 'resize' events).
 */
export async function execInPod(context: Context, request: ExecRequest, streams: ExecStreams): Promise<number> {
  const tty = request.tty && Boolean(streams.stdin.isTTY && streams.stdin.setRawMode);
  if (request.tty && !tty) streams.stderr.write('mariner: Unable to use a TTY - input is not a terminal\n');
  const query = new URLSearchParams();
  for (const word of request.command) query.append('command', word);
  if (request.container) query.set('container', request.container);
  if (request.stdin) query.set('stdin', 'true');
  query.set('stdout', 'true');
  // A terminal has one output stream: the kubelet merges stderr into it.
  if (!tty) query.set('stderr', 'true');
  if (tty) query.set('tty', 'true');
  const kubePath = `/api/v1/namespaces/${encodeURIComponent(request.namespace)}/pods/${encodeURIComponent(request.pod)}/exec?${query}`;
  const ws = new WebSocket(sessionsUrl(context, request.clusterId, kubePath).replace(/^http/, 'ws'), EXEC_PROTOCOLS, {
    headers: headersOf(context),
    perMessageDeflate: false,
  });

  // Listening from the start: the command's output (or its status) may follow the handshake at once.
  const statusChunks: Buffer[] = [];
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (!isBinary || data.length < 2) return;
    const channel = data[0];
    const payload = data.subarray(1);
    const out = channel === STDOUT ? streams.stdout : channel === STDERR ? streams.stderr : undefined;
    if (out) {
      // A slow reader of the output slows the command, as a pipe would.
      if (!out.write(payload)) {
        ws.pause();
        out.once('drain', () => ws.resume());
      }
    } else if (channel === STATUS) statusChunks.push(payload);
  });
  const ended = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  // After the handshake an error also closes the socket: `ended` reports it.
  ws.on('error', () => undefined);

  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_request, response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (text += chunk));
      response.on('end', () => reject(refusalOf(response.statusCode ?? 502, text)));
      response.on('error', () => reject(refusalOf(response.statusCode ?? 502, text)));
    });
    ws.once('error', (error) => {
      const code = (error as NodeJS.ErrnoException).code;
      reject(new CliError(`cannot reach ${context.url}: ${code ?? error.message}`, 'UNREACHABLE'));
    });
  }).catch((error: unknown) => {
    ws.terminate();
    throw error;
  });

  const v5 = ws.protocol === 'v5.channel.k8s.io';
  const send = (channel: number, data: Buffer | string, done?: (error?: Error) => void) => {
    if (ws.readyState !== WebSocket.OPEN) return done?.();
    ws.send(Buffer.concat([Buffer.from([channel]), Buffer.isBuffer(data) ? data : Buffer.from(data)]), done);
  };
  const cleanups: (() => void)[] = [];

  if (tty) {
    streams.stdin.setRawMode!(true);
    // Restored however this ends, even when the process exits from elsewhere.
    const restore = () => void streams.stdin.setRawMode!(false);
    process.once('exit', restore);
    cleanups.push(() => {
      restore();
      process.off('exit', restore);
    });
    const resize = () => send(RESIZE, JSON.stringify({ Width: streams.stdout.columns ?? 80, Height: streams.stdout.rows ?? 24 }));
    resize();
    // A terminal's stream emits 'resize' after it has read the new size (Node's own SIGWINCH handler).
    streams.stdout.on('resize', resize);
    cleanups.push(() => streams.stdout.off('resize', resize));
  }
  // A termination signal closes the connection (and so restores the terminal) rather than killing the CLI mid-way.
  const hangUp = () => ws.close(1000);
  for (const signal of ['SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, hangUp);
    cleanups.push(() => process.off(signal, hangUp));
  }

  if (request.stdin) {
    const input = streams.stdin;
    // One chunk in flight: the next is read once the socket took this one (backpressure).
    const onData = (chunk: Buffer | string) => {
      input.pause();
      send(STDIN, Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk), () => input.resume());
    };
    const onEnd = () => {
      if (v5) send(CLOSE, Buffer.from([STDIN]));
    };
    input.on('data', onData);
    input.once('end', onEnd);
    cleanups.push(() => {
      input.off('data', onData);
      input.off('end', onEnd);
      input.pause();
    });
  }

  try {
    const closed = await ended;
    if (statusChunks.length === 0) {
      throw new CliError(
        `the connection to ${context.url} ended before the command's exit status (${closed.code}${closed.reason ? ` ${closed.reason}` : ''})`,
        'CONNECTION_LOST',
      );
    }
    let status: KubeStatus;
    try {
      status = JSON.parse(Buffer.concat(statusChunks).toString('utf8')) as KubeStatus;
    } catch {
      throw new CliError(`exec failed: ${Buffer.concat(statusChunks).toString('utf8').slice(0, 200)}`, 'EXEC_FAILED');
    }
    return exitCodeOf(status);
  } finally {
    for (const cleanup of cleanups) cleanup();
    ws.terminate();
  }
}
