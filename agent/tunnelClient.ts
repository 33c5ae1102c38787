import http, { type IncomingMessage } from 'node:http';
import type { Http2Server, ServerHttp2Session } from 'node:http2';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { WebSocket } from 'ws';
import type { Logger } from '../lib/logging.js';
import { AGENT_ID_HEADER, TUNNEL_CONNECTION_WINDOW, TUNNEL_PROTOCOL, TUNNEL_UPGRADE_PATH, TUNNEL_WEBSOCKET_PATH, webSocketDuplex } from '../lib/tunnel.js';

/**
 * How the tunnel is carried: `upgrade` (an HTTP/1.1 Upgrade to the mariner-tunnel token, then raw bytes),
 * `websocket` (for proxies that pass WebSockets only), or `auto` (the default): the Upgrade first, and the
 * WebSocket from then on once a proxy shows it cannot pass the token (it answers the upgrade with a status
 * other than 101, 401 and 403, or resets the connection), said once in the log.
 */
export type TunnelTransportKind = 'auto' | 'upgrade' | 'websocket';

export interface TunnelClientOptions {
  /** The control plane's public URL, e.g. http://mariner.example.com:8080. */
  controlPlaneUrl: string;
  registrationKey: string;
  agentId: string;
  transport: TunnelTransportKind;
  /** The agent's HTTP/2 server: every tunnel connection becomes one of its sessions. */
  server: Http2Server;
  logger: Logger;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  /** Reconnect backoff: first delay and ceiling (exponential with full jitter in between). */
  backoff: { initialMs: number; maxMs: number };
  /** Called when the control plane refuses the key (401/403): retrying cannot help. */
  onRefused(message: string): void;
  onStateChange?(connected: boolean): void;
}

/** The control plane refused the registration key. */
export class TunnelRefusedError extends Error {
  override name = 'TunnelRefusedError';
}

/**
 * One outbound tunnel, kept up: dial, authenticate with the registration key, serve HTTP/2 over the
 * connection until it ends, then redial with exponential backoff and jitter. The HTTP/2 session is
 * destroyed as soon as its transport closes (prototypes §D), and PINGs detect a link that died
 * without closing.
 */
export class TunnelClient {
  private stopped = false;
  private current: { transport: Duplex; session: ServerHttp2Session | undefined } | undefined;
  private wake: (() => void) | undefined;
  private attempt = 0;
  private loop: Promise<void> | undefined;
  /** The transport dialed now: `auto` starts with the Upgrade and may move to the WebSocket for good. */
  private active: 'upgrade' | 'websocket';
  connected = false;

  constructor(private readonly options: TunnelClientOptions) {
    this.active = options.transport === 'websocket' ? 'websocket' : 'upgrade';
  }

  /** The transport in use (or tried next): what `auto` settled on. */
  get transport(): 'upgrade' | 'websocket' {
    return this.active;
  }

  start(): void {
    this.loop ??= this.run();
  }

  private setConnected(connected: boolean): void {
    if (this.connected === connected) return;
    this.connected = connected;
    this.options.onStateChange?.(connected);
  }

  private async run(): Promise<void> {
    const { logger } = this.options;
    while (!this.stopped) {
      let lived = 0;
      try {
        const transport = await this.dial();
        if (this.stopped) {
          transport.destroy();
          break;
        }
        const started = Date.now();
        await this.serve(transport);
        lived = Date.now() - started;
      } catch (error) {
        if (error instanceof TunnelRefusedError) {
          this.stopped = true;
          this.options.onRefused(error.message);
          break;
        }
        logger.warn({ err: error instanceof Error ? error.message : error }, 'tunnel connection failed');
      }
      if (this.stopped) break;
      // A connection that held for a while resets the backoff: this is a new outage.
      if (lived > 10_000) this.attempt = 0;
      const { initialMs, maxMs } = this.options.backoff;
      const ceiling = Math.min(maxMs, initialMs * 2 ** this.attempt++);
      const delay = ceiling / 2 + Math.random() * (ceiling / 2);
      logger.info({ delayMs: Math.round(delay) }, 'tunnel down; reconnecting');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  /**
   * Opens the transport. With `auto`, an Upgrade the path in between cannot pass is retried at once as a
   * WebSocket; when that connects, the client stays on the WebSocket (logged once, with why).
   */
  private async dial(): Promise<Duplex> {
    if (this.options.transport !== 'auto' || this.active === 'websocket') return this.dialWith(this.active);
    try {
      return await this.dialWith('upgrade');
    } catch (error) {
      const reason = upgradeNotPassed(error);
      if (!reason) throw error;
      const transport = await this.dialWith('websocket').catch((wsError: unknown) => {
        if (wsError instanceof TunnelRefusedError) throw wsError;
        throw new Error(`the Upgrade ${reason}, and the WebSocket failed too: ${wsError instanceof Error ? wsError.message : String(wsError)}`);
      });
      this.active = 'websocket';
      this.options.logger.warn(
        { reason, controlPlaneUrl: this.options.controlPlaneUrl },
        `tunnel: the way to the control plane does not pass the ${TUNNEL_PROTOCOL} Upgrade (${reason}); using the WebSocket transport from now on (set MARINER_AGENT_TRANSPORT=websocket to skip the first try)`,
      );
      return transport;
    }
  }

  /** Opens one transport: an HTTP/1.1 Upgrade to a raw stream, or a WebSocket. */
  private dialWith(kind: 'upgrade' | 'websocket'): Promise<Duplex> {
    const { controlPlaneUrl, registrationKey, agentId } = this.options;
    const headers = { authorization: `Bearer ${registrationKey}`, [AGENT_ID_HEADER]: agentId };
    if (kind === 'websocket') {
      const url = new URL(TUNNEL_WEBSOCKET_PATH, controlPlaneUrl);
      url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
      return new Promise((resolve, reject) => {
        const ws = new WebSocket(url, { perMessageDeflate: false, headers, handshakeTimeout: 15_000 });
        ws.once('unexpected-response', (_req, res) => {
          readError(res).then((message) => reject(refusalOrError(res.statusCode ?? 0, message)), reject);
          ws.terminate();
        });
        ws.once('error', reject);
        ws.once('open', () => {
          resolve(webSocketDuplex(ws));
        });
      });
    }
    const url = new URL(TUNNEL_UPGRADE_PATH, controlPlaneUrl);
    const client = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = client.request(url, { method: 'GET', headers: { ...headers, connection: 'Upgrade', upgrade: TUNNEL_PROTOCOL }, timeout: 15_000 });
      req.once('upgrade', (_res, socket, head) => {
        // Bytes after the 101 (the control plane's HTTP/2 preface) belong to the tunnel.
        if (head.length > 0) socket.unshift(head);
        socket.setNoDelay(true);
        socket.setKeepAlive(true, 30_000);
        resolve(socket);
      });
      req.once('response', (res) => {
        readError(res).then((message) => reject(refusalOrError(res.statusCode ?? 0, message)), reject);
      });
      // A connection reset before any answer: some proxies drop upgrades they do not know.
      req.once('error', (error: NodeJS.ErrnoException) => {
        if (error.code === 'ECONNRESET') (error as UpgradeResetError).upgradeReset = true;
      });
      req.once('timeout', () => req.destroy(new Error('timed out dialing the control plane')));
      req.once('error', reject);
      req.end();
    });
  }

  /** Serves HTTP/2 over the transport until it closes. */
  private serve(transport: Duplex): Promise<void> {
    const { server, logger } = this.options;
    return new Promise<void>((resolve) => {
      let session: ServerHttp2Session | undefined;
      const onSession = (s: ServerHttp2Session) => (session = s);
      server.once('session', onSession);
      server.emit('connection', transport);
      server.off('session', onSession);
      this.current = { transport, session };
      this.setConnected(true);
      logger.info({ transport: this.active }, 'tunnel connected');
      session?.once('remoteSettings', () => session?.setLocalWindowSize(TUNNEL_CONNECTION_WINDOW));
      const heartbeat = setInterval(() => {
        if (!session || session.destroyed) return;
        const timeout = setTimeout(() => transport.destroy(new Error('heartbeat timed out')), this.options.heartbeatTimeoutMs).unref();
        try {
          session.ping((error) => {
            clearTimeout(timeout);
            if (error) transport.destroy(error);
          });
        } catch (error) {
          clearTimeout(timeout);
          transport.destroy(error as Error);
        }
      }, this.options.heartbeatIntervalMs).unref();
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        clearInterval(heartbeat);
        if (session && !session.destroyed) session.destroy();
        if (!transport.destroyed) transport.destroy();
        this.current = undefined;
        this.setConnected(false);
        resolve();
      };
      transport.once('close', finish);
      transport.once('end', finish);
      transport.once('error', (error) => {
        logger.warn({ err: error.message }, 'tunnel transport error');
        finish();
      });
      session?.once('close', finish);
      session?.on('error', (error) => {
        logger.warn({ err: error.message }, 'tunnel session error');
        finish();
      });
    });
  }

  /** Drops the current connection (tests: a network cut); the client redials. */
  dropConnection(): void {
    this.current?.transport.destroy();
  }

  /** Stops for good: closes the connection and ends the redial loop. */
  /**
   * Stops for good: GOAWAY, so the control plane sends no new requests here, then the requests in
   * flight get `drainMs` to finish before the connection is cut; the redial loop ends.
   */
  async stop(drainMs = 5000): Promise<void> {
    this.stopped = true;
    const current = this.current;
    if (current?.session && !current.session.destroyed) {
      const drained = new Promise<void>((resolve) => current.session!.close(resolve));
      await Promise.race([drained, new Promise((resolve) => setTimeout(resolve, drainMs).unref())]);
    }
    current?.transport.destroy();
    this.wake?.();
    await this.loop;
  }
}

/** A non-101 answer to the tunnel's dial, other than a refusal of the key. */
class UpgradeAnsweredError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}
type UpgradeResetError = Error & { upgradeReset?: boolean };

function refusalOrError(status: number, message: string): Error {
  if (status === 401 || status === 403) return new TunnelRefusedError(`the control plane refused the registration key (${status}): ${message}`);
  return new UpgradeAnsweredError(status, `the control plane answered ${status} instead of upgrading: ${message}`);
}

/**
 * Why an Upgrade failure means the path cannot pass the token (so the WebSocket is worth a try), or
 * undefined when it does not: an answer other than 101 that is not an outage of the control plane behind
 * a working proxy (502, 503, 504: tried again as they are), or a reset before any answer.
 */
function upgradeNotPassed(error: unknown): string | undefined {
  if (error instanceof UpgradeAnsweredError) return [502, 503, 504].includes(error.status) ? undefined : `answered ${error.status} instead of 101`;
  if ((error as UpgradeResetError | undefined)?.upgradeReset) return 'the connection was reset';
  return undefined;
}

async function readError(res: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res) {
    size += (chunk as Buffer).length;
    if (size > 16 * 1024) break;
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    const body = JSON.parse(text) as { error?: { message?: string } };
    return body.error?.message ?? text;
  } catch {
    return text.slice(0, 500);
  }
}
