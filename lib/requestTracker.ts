import type { Server, ServerResponse } from 'node:http';

/**
 * The requests in flight on an HTTP server, so that it can stop gracefully: refuse new connections,
 * let the requests in flight finish (up to a limit), and close keep-alive connections as they go idle.
 * Upgraded connections (WebSockets, agent tunnels) are not requests: their owners close them.
 */
export interface RequestTracker {
  inFlight(): number;
  /** Stops accepting connections; resolves true when the requests in flight finished, false at the limit. */
  drain(timeoutMs: number): Promise<boolean>;
}

export function trackRequests(server: Server): RequestTracker {
  const active = new Set<ServerResponse>();
  let draining = false;
  let idle: (() => void) | undefined;
  server.on('request', (_req, res: ServerResponse) => {
    active.add(res);
    // A request on a keep-alive connection during the drain: its connection closes after the answer.
    if (draining) res.setHeader('connection', 'close');
    res.once('close', () => {
      active.delete(res);
      if (!draining) return;
      // A keep-alive connection whose answer just went out would otherwise stay open until it times out.
      server.closeIdleConnections();
      if (active.size === 0) idle?.();
    });
  });
  return {
    inFlight: () => active.size,
    drain(timeoutMs) {
      draining = true;
      if (server.listening) server.close();
      server.closeIdleConnections();
      for (const res of active) if (!res.headersSent) res.setHeader('connection', 'close');
      if (active.size === 0) return Promise.resolve(true);
      return new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), timeoutMs);
        idle = () => {
          clearTimeout(timer);
          resolve(true);
        };
      });
    },
  };
}

/** Counts per key of things in flight (requests to a runtime), each counted until its stream closes. */
export class InFlightCounts {
  private readonly counts = new Map<string, number>();

  get(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  /** Counts one more for `key` until `stream` closes. */
  track(key: string, stream: { once(event: 'close', listener: () => void): unknown }): void {
    this.counts.set(key, this.get(key) + 1);
    stream.once('close', () => {
      const left = this.get(key) - 1;
      if (left > 0) this.counts.set(key, left);
      else this.counts.delete(key);
    });
  }
}
