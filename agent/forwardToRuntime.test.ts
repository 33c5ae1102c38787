import { createServer, type IncomingHttpHeaders } from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { agentRoutes } from '../lib/agentContract.js';
import { createLogger } from '../lib/logging.js';
import { LogCapture } from '../test/support/logCapture.js';
import { forwardToRuntime, logRuntimeRequest } from './forwardToRuntime.js';

describe('forwardToRuntime', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => cleanups.splice(0).forEach((cleanup) => cleanup()));

  it("passes the control plane's x-request-id to the runtime and logs the request with it", async () => {
    let seen: IncomingHttpHeaders | undefined;
    const runtime = createServer((req, res) => {
      seen = req.headers;
      req.resume().on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'));
    });
    await new Promise<void>((resolve) => runtime.listen(0, '127.0.0.1', resolve));
    const logs = new LogCapture();
    const logger = createLogger('info', 'agent', logs);
    // The agent's side of the tunnel: an HTTP/2 server forwarding to the runtime.
    const agent = http2.createServer((req, res) => {
      logRuntimeRequest(logger, req, res, 'm1', '/v1/chat/completions');
      forwardToRuntime({
        baseUrl: `http://127.0.0.1:${(runtime.address() as AddressInfo).port}`,
        modelId: 'm1',
        req,
        res,
        runtimePath: '/v1/chat/completions',
      });
    });
    await new Promise<void>((resolve) => agent.listen(0, '127.0.0.1', resolve));
    const session = http2.connect(`http://127.0.0.1:${(agent.address() as AddressInfo).port}`);
    cleanups.push(() => {
      session.close();
      agent.close();
      runtime.close();
    });

    const stream = session.request({
      ':method': 'POST',
      ':path': agentRoutes.runtime('m1', '/v1/chat/completions'),
      'content-type': 'application/json',
      'x-request-id': 'trace-123:1',
    });
    stream.end('{}');
    let body = '';
    stream.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
    await new Promise((resolve) => stream.on('end', resolve));
    expect(body).toBe('{"ok":true}');
    expect(seen?.['x-request-id']).toBe('trace-123:1');
    const line = await logs.next((l) => l.msg === 'inference request', 'inference request');
    expect(line).toMatchObject({ requestId: 'trace-123:1', modelId: 'm1', path: '/v1/chat/completions', status: 200 });
  });
});
