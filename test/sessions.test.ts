import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import { createKubernetesExecutor } from '../agent/kubernetesExecutor.js';
import { silentLogger } from '../lib/logging.js';
import { kubeConfigFor, kubeRequest, startKubeApiServer, TEST_TLS, type KubeApiServer } from './support/kubeApiServer.js';
import { kubectlPath } from './support/kubectl.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';
import { startTlsFront } from './support/tlsFront.js';
import { until, waitFor } from './support/until.js';

const execFileAsync = promisify(execFile);

async function runningPod(server: KubeApiServer, namespace: string, name: string): Promise<void> {
  await kubeRequest(server, 'POST', `/api/v1/namespaces/${namespace}/pods`, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace },
    spec: { containers: [{ name: 'main', image: 'busybox' }] },
  });
  // Logs are readable once the pod has left Pending, as on a real cluster.
  const pod = await kubeRequest(server, 'GET', `/api/v1/namespaces/${namespace}/pods/${name}`);
  await kubeRequest(server, 'PUT', `/api/v1/namespaces/${namespace}/pods/${name}/status`, { ...pod, status: { ...pod.status, phase: 'Running' } });
}

describe('the session tunnel and /v1/sessions', () => {
  let t: TestPlatform;
  let server: KubeApiServer;
  let agent: Agent;
  let clusterId: string;
  let teamA: { key: string; organizationId: string; projectId: string };
  let teamB: { key: string };
  const sessions = () => `${t.url}/v1/sessions/${clusterId}`;
  const as = (key: string) => ({ authorization: `Bearer ${key}` });

  beforeAll(async () => {
    server = await startKubeApiServer({ nodes: [{ name: 'gpu-node', gpus: 4 }, { name: 'cpu-node' }] });
    for (const ns of ['team-a', 'team-b'])
      await kubeRequest(server, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    await runningPod(server, 'team-a', 'trainer');
    await runningPod(server, 'team-b', 'secret-trainer');
    // Exec through /v1/sessions is an operator's opt-in (MARINER_SESSIONS_EXEC; test/security/sessionsAllowList.test.ts: off by default).
    t = await startTestPlatform({ config: { sessions: { allowExec: true } } });
    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "k8s" }) { registrationKey cluster { id } } }');
    clusterId = registerCluster.cluster.id;
    const kubeConfig = kubeConfigFor(server);
    agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: registerCluster.registrationKey,
      executor: await createKubernetesExecutor({ kubeConfig, logger: silentLogger() }),
      backoff: { initialMs: 10, maxMs: 50 },
      logger: silentLogger(),
    });
    await agent.whenConnected();
    teamA = await projectWithKey(t, 'team-a', { assignments: [{ clusterId, namespace: 'team-a' }] });
    teamB = await projectWithKey(t, 'team-b', { assignments: [{ clusterId, namespace: 'team-b' }] });
  }, 60_000);
  afterAll(async () => {
    await agent?.close();
    await t?.close();
    await server?.close();
  });

  it('the agent reports the Kubernetes cluster: nodes and GPUs', async () => {
    await agent.reportStatus();
    const { cluster } = await t.gqlOk('query($id: ID!) { cluster(id: $id) { connected status { gpuCapacity nodes { name gpuCapacity } } } }', {
      id: clusterId,
    });
    expect(cluster.connected).toBe(true);
    expect(cluster.status.gpuCapacity).toBe(4);
    expect(cluster.status.nodes.map((n: { name: string }) => n.name).sort()).toEqual(['cpu-node', 'gpu-node']);
  });

  it("a project's key reads its own namespace, never another project's or cluster-scoped paths; the cluster never sees the key", async () => {
    const own = await fetch(`${sessions()}/api/v1/namespaces/team-a/pods`, { headers: { ...as(teamA.key), 'impersonate-user': 'system:admin' } });
    expect(own.status).toBe(200);
    expect((await own.json()).items.map((p: { metadata: { name: string } }) => p.metadata.name)).toEqual(['trainer']);

    const other = await fetch(`${sessions()}/api/v1/namespaces/team-b/pods`, { headers: as(teamA.key) });
    expect(other.status).toBe(403);
    expect(await other.json()).toMatchObject({ kind: 'Status', code: 403, message: expect.stringContaining('team-b') });
    const otherLogs = await fetch(`${sessions()}/api/v1/namespaces/team-b/pods/secret-trainer/log`, { headers: as(teamA.key) });
    expect(otherLogs.status).toBe(403);
    const nodes = await fetch(`${sessions()}/api/v1/nodes`, { headers: as(teamB.key) });
    expect(nodes.status).toBe(403);
    const anonymous = await fetch(`${sessions()}/api/v1/namespaces/team-a/pods`);
    expect(anonymous.status).toBe(401);

    const seen = server.requests.map((r) => String(r.headers['authorization']));
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((h) => h === `Bearer ${server.token}`)).toBe(true);
    // Nor may a caller borrow the agent's account through impersonation.
    expect(server.requests.some((r) => r.headers['impersonate-user'] !== undefined)).toBe(false);
  });

  it('a cluster of no connected agent answers 503, an unknown path 404, both as Kubernetes Status', async () => {
    const missing = await fetch(`${t.url}/v1/sessions/cluster-nosuchcluster/api/v1/namespaces/team-a/pods`, { headers: as(teamA.key) });
    expect(missing.status).toBe(503);
    expect(await missing.json()).toMatchObject({ kind: 'Status', code: 503 });
    const bad = await fetch(`${sessions()}/not-kubernetes`, { headers: as(teamA.key) });
    expect(bad.status).toBe(404);
  });

  it('200 concurrent log follows share one tunnel without head-of-line blocking: a silent stream stalls none of the others', async () => {
    await runningPod(server, 'team-a', 'silent');
    await runningPod(server, 'team-a', 'chatty');
    const followers = () => server.requests.filter((r) => r.path.includes('/log?') && r.path.includes('follow=true')).length;
    const before = followers();
    const silent = fetch(`${sessions()}/api/v1/namespaces/team-a/pods/silent/log?follow=true`, { headers: as(teamA.key) });
    const silentResponse = await silent;
    expect(silentResponse.status).toBe(200);
    const chatty = Array.from({ length: 200 }, () =>
      fetch(`${sessions()}/api/v1/namespaces/team-a/pods/chatty/log?follow=true`, { headers: as(teamA.key) }).then(async (r) => ({
        status: r.status,
        body: await r.text(),
      })),
    );
    await until(() => followers() >= before + 201, 'all 201 follow requests to reach the cluster', 30_000);
    expect(t.platform.sessions.registry.tunnels(clusterId)).toHaveLength(1);
    const lines = Array.from({ length: 20 }, (_, i) => `step ${i} loss ${(1 / (i + 1)).toFixed(3)}`);
    for (const line of lines) server.appendLog('team-a', 'chatty', line);
    server.endLog('team-a', 'chatty');
    const results = await Promise.all(chatty);
    expect(results.every((r) => r.status === 200 && r.body === lines.map((l) => `${l}\n`).join(''))).toBe(true);
    // The silent stream is still open, and still delivers once its pod speaks.
    server.appendLog('team-a', 'silent', 'finally');
    server.endLog('team-a', 'silent');
    expect(await silentResponse.text()).toBe('finally\n');
  }, 60_000);

  it('a tunnel cut mid-stream fails the in-flight request cleanly; the agent reconnects and later requests succeed', async () => {
    await runningPod(server, 'team-a', 'cut');
    const response = await fetch(`${sessions()}/api/v1/namespaces/team-a/pods/cut/log?follow=true`, { headers: as(teamA.key) });
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    server.appendLog('team-a', 'cut', 'first line');
    const first = await reader.read();
    expect(Buffer.from(first.value!).toString()).toBe('first line\n');
    const connectedAt = t.platform.sessions.registry.tunnels(clusterId)[0]!.connectedAt;

    agent.dropConnections();
    // The stream ends with an error instead of hanging.
    await expect(
      (async () => {
        for (;;) {
          const { done } = await reader.read();
          if (done) throw new Error('ended without error');
        }
      })(),
    ).rejects.toThrow();
    await until(() => t.platform.sessions.registry.tunnels(clusterId).some((tn) => tn.connectedAt > connectedAt), 'the agent to reconnect');
    const after = await fetch(`${sessions()}/api/v1/namespaces/team-a/pods`, { headers: as(teamA.key) });
    expect(after.status).toBe(200);
  });

  it('with exec turned on, an exec WebSocket (upgraded connection) passes through /v1/sessions both ways', async () => {
    const url = `${sessions().replace('http://', 'ws://')}/api/v1/namespaces/team-a/pods/trainer/exec?command=sh&stdin=true&stdout=true`;
    const ws = new WebSocket(url, ['v5.channel.k8s.io'], { headers: as(teamA.key) });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    expect(ws.protocol).toBe('v5.channel.k8s.io');
    const echoed = new Promise<Buffer>((resolve) => ws.once('message', (data) => resolve(data as Buffer)));
    ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('hello cluster')]));
    const reply = await echoed;
    expect(reply[0]).toBe(1);
    expect(reply.subarray(1).toString()).toBe('hello cluster');
    ws.close();
    const refused = new WebSocket(url.replace('team-a/pods/trainer', 'team-b/pods/secret-trainer'), ['v5.channel.k8s.io'], { headers: as(teamA.key) });
    const status = await new Promise<number>((resolve) => refused.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
    expect(status).toBe(403);
    // The exec is in the audit log (subgraphs/sessions/sessionAudit.ts): who, which cluster and path, never the command.
    const [entry] = await waitFor(
      () => t.platform.db.knex.withSchema('audit').table('audit_events').where({ kind: 'session-stream', organization_id: teamA.organizationId }),
      (rows) => rows.length > 0,
      'the audit entry of the exec',
    );
    expect(entry).toMatchObject({
      project_id: teamA.projectId,
      operation_name: `GET /v1/sessions/${clusterId}/api/v1/namespaces/team-a/pods/trainer/exec`,
      user_id: expect.any(String),
    });
    expect(JSON.stringify(entry)).not.toContain('command=sh');
  });

  it('kubectl with an API key as bearer token lists pods and follows logs through /v1/sessions', async () => {
    const kubectl = await kubectlPath();
    const front = await startTlsFront(t.url, TEST_TLS);
    const dir = mkdtempSync(path.join(tmpdir(), 'mariner-kubectl-'));
    try {
      const kubeconfig = path.join(dir, 'config');
      writeFileSync(
        kubeconfig,
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'Config',
          clusters: [
            {
              name: 'mariner',
              cluster: { server: `${front.url}/v1/sessions/${clusterId}`, 'certificate-authority-data': Buffer.from(TEST_TLS.cert).toString('base64') },
            },
          ],
          users: [{ name: 'team-a', user: { token: teamA.key } }],
          contexts: [{ name: 'team-a', context: { cluster: 'mariner', user: 'team-a', namespace: 'team-a' } }],
          'current-context': 'team-a',
        }),
      );
      const env = { ...process.env, KUBECONFIG: kubeconfig, HOME: dir };
      const { stdout } = await execFileAsync(kubectl, ['get', 'pods'], { env, timeout: 30_000 });
      expect(stdout).toMatch(/^NAME\s+READY\s+STATUS/m);
      expect(stdout).toMatch(/^trainer\s/m);

      await runningPod(server, 'team-a', 'followed');
      const follow = spawn(kubectl, ['logs', '-f', 'followed'], { env });
      let output = '';
      follow.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      let errors = '';
      follow.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => follow.once('exit', resolve));
      await until(
        () => server.requests.some((r) => r.path.startsWith('/api/v1/namespaces/team-a/pods/followed/log') && r.path.includes('follow=true')),
        'kubectl to follow',
        30_000,
      );
      server.appendLog('team-a', 'followed', 'epoch 1');
      await until(() => output.includes('epoch 1'), 'the first line at kubectl');
      server.appendLog('team-a', 'followed', 'epoch 2');
      server.endLog('team-a', 'followed');
      expect(await exited).toBe(0);
      expect(output).toBe('epoch 1\nepoch 2\n');
      expect(errors).toBe('');

      // Another project's namespace is refused to kubectl too.
      await expect(execFileAsync(kubectl, ['get', 'pods', '-n', 'team-b'], { env, timeout: 30_000 })).rejects.toMatchObject({
        stderr: expect.stringContaining('not assigned to your project'),
      });
    } finally {
      await front.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('an agent that shuts down lets the requests in flight finish (GOAWAY, then drain) and takes no new ones', async () => {
    await runningPod(server, 'team-a', 'draining');
    const response = await fetch(`${sessions()}/api/v1/namespaces/team-a/pods/draining/log?follow=true`, { headers: as(teamA.key) });
    expect(response.status).toBe(200);
    const body = response.text();
    const closing = agent.close();
    await until(() => t.platform.sessions.registry.tunnels(clusterId).length === 0, 'the tunnel to leave the registry');
    const refused = await fetch(`${sessions()}/api/v1/namespaces/team-a/pods`, { headers: as(teamA.key) });
    expect(refused.status).toBe(503);
    server.appendLog('team-a', 'draining', 'last words');
    server.endLog('team-a', 'draining');
    expect(await body).toBe('last words\n');
    await closing;
  });
});
