import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentRoutes, callAgent, parseAgentRoute, type AgentRoute } from './agentContract.js';

describe('the agent contract', () => {
  it('reads back every route the control plane builds', () => {
    const cases: [string, AgentRoute][] = [
      [agentRoutes.healthz(), { kind: 'healthz' }],
      [agentRoutes.reports(), { kind: 'reports' }],
      [agentRoutes.reportResults(), { kind: 'reportResults' }],
      [agentRoutes.reconcile(), { kind: 'reconcile', wake: null }],
      [agentRoutes.reconcile('org/llama 3?&x=1'), { kind: 'reconcile', wake: 'org/llama 3?&x=1' }],
      [agentRoutes.startJob(), { kind: 'startJob' }],
      [agentRoutes.jobAction('ftjob-abc', 'cancel'), { kind: 'jobAction', jobId: 'ftjob-abc', action: 'cancel' }],
      [agentRoutes.jobAction('a/b?c%d', 'delete'), { kind: 'jobAction', jobId: 'a/b?c%d', action: 'delete' }],
      [agentRoutes.runtime('ft:llama/3:org:sfx', '/v1/chat/completions'), { kind: 'runtime', modelId: 'ft:llama/3:org:sfx', path: '/v1/chat/completions' }],
      [agentRoutes.runtime('m%2F', '/v1/embeddings?x=/y'), { kind: 'runtime', modelId: 'm%2F', path: '/v1/embeddings?x=/y' }],
      [agentRoutes.kubernetes('/api/v1/namespaces/default/pods?watch=1'), { kind: 'kubernetes', path: '/api/v1/namespaces/default/pods?watch=1' }],
    ];
    for (const [path, route] of cases) expect(parseAgentRoute(path), path).toEqual(route);
    for (const action of ['cancel', 'stop', 'start', 'delete'] as const) {
      expect(parseAgentRoute(agentRoutes.jobAction('job-1', action))).toEqual({ kind: 'jobAction', jobId: 'job-1', action });
    }
  });

  it('refuses paths it does not build: unknown, malformed or badly encoded', () => {
    for (const path of [
      '/',
      '/mariner/v1',
      '/mariner/v1/',
      '/mariner/v1/healthz/',
      '/mariner/v1/jobs/',
      '/mariner/v1/jobs/j1',
      '/mariner/v1/jobs/j1/explode',
      '/mariner/v1/jobs/j1/cancel/again',
      '/mariner/v1/jobs//cancel',
      '/mariner/v1/jobs/%E0%A4%A/cancel',
      '/mariner/v1/runtimes/',
      '/mariner/v1/runtimes/m1',
      '/mariner/v1/runtimes//v1/chat/completions',
      '/mariner/v1/runtimes/%ZZ/v1/chat/completions',
      // A runtime path read as another host by new URL(path, base): never forwarded.
      '/mariner/v1/runtimes/m1//evil.example/v1/chat/completions',
      '/mariner/v1/runtimes/m1/\\evil.example/x',
      '/k8s',
      '/k8sapi/v1',
      '/v1/chat/completions',
    ]) {
      expect(parseAgentRoute(path), path).toBeNull();
    }
  });

  it('refuses to build a route that would not read back', () => {
    expect(() => agentRoutes.runtime('m1', 'v1/chat/completions')).toThrow(/starts with a single \//);
    expect(() => agentRoutes.runtime('m1', '//evil.example/')).toThrow(/starts with a single \//);
    expect(() => agentRoutes.runtime('', '/v1/models')).toThrow(/cannot be empty/);
    expect(() => agentRoutes.jobAction('', 'cancel')).toThrow(/cannot be empty/);
    expect(() => agentRoutes.kubernetes('api/v1')).toThrow(/starts with \//);
  });
});

describe('callAgent', () => {
  let server: http2.Http2Server;
  let session: http2.ClientHttp2Session;
  const tunnels = {
    request: (clusterId: string, headers: http2.OutgoingHttpHeaders, options?: { endStream?: boolean }) => {
      if (clusterId !== 'cluster-a') throw new Error(`no agent of cluster ${clusterId} is connected`);
      return session.request(headers, options);
    },
  };

  beforeAll(async () => {
    // The agent's end: its HTTP/2 server, routing with the contract.
    server = http2.createServer((req, res) => {
      const route = parseAgentRoute(req.url);
      if (route?.kind === 'jobAction' && route.action === 'cancel') {
        const chunks: Buffer[] = [];
        req.on('data', (chunk: Buffer) => chunks.push(chunk));
        req.on('end', () => {
          res.writeHead(202, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ cancel: route.jobId, got: JSON.parse(Buffer.concat(chunks).toString()), requestId: req.headers['x-request-id'] }));
        });
        return;
      }
      if (route?.kind === 'healthz') return; // never answers
      if (route?.kind === 'reconcile') return void req.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      res.writeHead(404);
      res.end('not json');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  });
  afterAll(() => {
    session.destroy();
    server.close();
  });

  it('posts JSON and reads the JSON answer, with the request id', async () => {
    const answer = await callAgent(tunnels, 'cluster-a', agentRoutes.jobAction('ftjob-1', 'cancel'), { id: 'ftjob-1' }, { requestId: 'req-1' });
    expect(answer).toEqual({ status: 202, body: { cancel: 'ftjob-1', got: { id: 'ftjob-1' }, requestId: 'req-1' } });
  });

  it('resolves any status, with an empty body when the answer is not JSON', async () => {
    expect(await callAgent(tunnels, 'cluster-a', agentRoutes.startJob(), undefined)).toEqual({ status: 404, body: {} });
  });

  it('fails when no agent is connected, the stream is reset, or the agent does not answer in time', async () => {
    await expect(callAgent(tunnels, 'cluster-b', agentRoutes.startJob(), {})).rejects.toThrow(/no agent of cluster cluster-b/);
    await expect(callAgent(tunnels, 'cluster-a', agentRoutes.reconcile('m'), undefined)).rejects.toThrow(/ended without an answer|NGHTTP2_INTERNAL_ERROR/);
    await expect(callAgent(tunnels, 'cluster-a', agentRoutes.healthz(), undefined, { timeoutMs: 100 })).rejects.toThrow(/did not answer within 100 ms/);
  });
});
