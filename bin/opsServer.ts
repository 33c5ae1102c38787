import { createServer } from 'node:http';
import type { Registry } from 'prom-client';
import { sendJson } from '../lib/http.js';
import type { Logger } from '../lib/logging.js';
import { closeServer, listen, urlHost } from './httpServers.js';

/**
 * The operations port of a `mariner serve` component or a `mariner agent`, apart from the traffic so
 * probes never queue behind requests: /healthz (the process is alive), /readyz (it can take traffic),
 * /metrics (Prometheus text format).
 */
export interface OpsServer {
  url: string;
  close(): Promise<void>;
}

export interface OpsServerOptions {
  host: string;
  port: number;
  readiness(): Promise<{ ready: boolean; status: string }>;
  registry: Registry;
  logger: Logger;
}

export async function startOpsServer(options: OpsServerOptions): Promise<OpsServer> {
  const { registry, logger } = options;
  const server = createServer((req, res) => {
    const pathname = new URL(req.url ?? '/', 'http://ops').pathname;
    if (pathname === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (pathname === '/readyz') {
      void options.readiness().then(
        ({ ready, status }) => sendJson(res, ready ? 200 : 503, { status }),
        (error: unknown) => {
          logger.error({ err: error }, 'readiness check failed');
          sendJson(res, 503, { status: 'readiness check failed' });
        },
      );
      return;
    }
    if (pathname === '/metrics') {
      void registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(text);
        },
        (error: unknown) => {
          logger.error({ err: error }, 'metrics collection failed');
          sendJson(res, 500, { error: 'metrics collection failed' });
        },
      );
      return;
    }
    sendJson(res, 404, { error: 'not found: /healthz, /readyz, /metrics' });
  });
  const port = await listen(server, options.port, options.host);
  return { url: `http://${urlHost(options.host, port)}`, close: () => closeServer(server) };
}
