import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import { createKubernetesExecutor } from '../agent/kubernetesExecutor.js';
import { silentLogger } from '../lib/logging.js';
import { kubeConfigFor, kubeRequest, startKubeApiServer, TEST_TLS, type KubeApiServer } from './support/kubeApiServer.js';
import { kubectlPath } from './support/kubectl.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';
import { startTlsFront } from './support/tlsFront.js';
import { waitFor } from './support/until.js';

const execFileAsync = promisify(execFile);

/** A request straight to a test Kubernetes API (what the cluster's controllers and kubelet would do). */

/** A pod holding `gpus` GPUs, Running (its log readable), as the Job controller and kubelet would make it. */
async function gpuPod(server: KubeApiServer, namespace: string, name: string, gpus: number, labels: Record<string, string> = {}): Promise<void> {
  await kubeRequest(server, 'POST', `/api/v1/namespaces/${namespace}/pods`, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels },
    spec: { containers: [{ name: 'main', image: 'busybox', resources: { limits: { 'nvidia.com/gpu': String(gpus) } } }] },
  });
  const pod = await kubeRequest(server, 'GET', `/api/v1/namespaces/${namespace}/pods/${name}`);
  await kubeRequest(server, 'PUT', `/api/v1/namespaces/${namespace}/pods/${name}/status`, { ...pod, status: { ...pod.status, phase: 'Running' } });
}

/** A GPU Job as `kubectl apply -f job.yaml` sends it (kubectl converts the YAML to JSON). */
const gpuJob = (name: string, gpus: number, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'batch/v1',
  kind: 'Job',
  metadata: { name, labels: { team: 'a' } },
  spec: {
    backoffLimit: 0,
    template: {
      spec: {
        restartPolicy: 'Never',
        containers: [{ name: 'train', image: 'ghcr.io/example/train:1', resources: { limits: { 'nvidia.com/gpu': String(gpus) } } }],
        ...extra,
      },
    },
  },
});

/**
 * Issue 22, GPU federation: the virtual cluster `federated` (`/v1/sessions/federated/...`) takes batch/v1
 * Jobs in a project's namespace and places each on a cluster of the project's assignments with its GPUs
 * free: two clusters on the test Kubernetes API, each with a real agent connected through its tunnel.
 */
describe('the federated cluster', () => {
  let t: TestPlatform;
  let serverA: KubeApiServer;
  let serverB: KubeApiServer;
  let agentA: Agent;
  let agentB: Agent;
  let clusterA: string;
  let clusterB: string;
  let teamA: { key: string };
  let other: { key: string };
  const federated = `/v1/sessions/federated`;
  const call = (key: string, method: string, path: string, body?: unknown) =>
    fetch(`${t.url}${federated}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json' },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  const jobs = '/apis/batch/v1/namespaces/team-a/jobs';

  beforeAll(async () => {
    serverA = await startKubeApiServer({ nodes: [{ name: 'a-gpu', gpus: 2 }] });
    serverB = await startKubeApiServer({ nodes: [{ name: 'b-gpu', gpus: 2 }] });
    for (const server of [serverA, serverB]) {
      for (const ns of ['team-a', 'busy'])
        await kubeRequest(server, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    }
    // Namespace team-c exists on cluster A only.
    await kubeRequest(serverA, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-c' } });
    // Cluster A is full: its two GPUs are taken by other work.
    await gpuPod(serverA, 'busy', 'other-work', 2);
    t = await startTestPlatform();
    const agents: Agent[] = [];
    const ids: string[] = [];
    for (const [name, server] of [
      ['a', serverA],
      ['b', serverB],
    ] as const) {
      const { registerCluster } = await t.gqlOk('mutation($name: String!) { registerCluster(input: { name: $name }) { registrationKey cluster { id } } }', {
        name,
      });
      const agent = await startAgent({
        controlPlaneUrl: t.url,
        registrationKey: registerCluster.registrationKey,
        executor: await createKubernetesExecutor({ kubeConfig: kubeConfigFor(server), logger: silentLogger() }),
        backoff: { initialMs: 10, maxMs: 50 },
        logger: silentLogger(),
      });
      await agent.whenConnected();
      await agent.reportStatus();
      agents.push(agent);
      ids.push(registerCluster.cluster.id);
    }
    [agentA, agentB] = agents as [Agent, Agent];
    [clusterA, clusterB] = ids as [string, string];
    teamA = await projectWithKey(t, 'team-a', {
      assignments: [
        { clusterId: clusterA, namespace: 'team-a' },
        { clusterId: clusterB, namespace: 'team-a' },
        { clusterId: clusterA, namespace: 'team-c' },
        { clusterId: clusterB, namespace: 'team-c' },
      ],
    });
    // Another organization, with a namespace of its own on cluster A.
    other = await projectWithKey(t, 'other', { assignments: [{ clusterId: clusterA, namespace: 'other-ns' }] });
  }, 120_000);
  afterAll(async () => {
    await agentA?.close();
    await agentB?.close();
    await t?.close();
    await serverA?.close();
    await serverB?.close();
  });

  it('a GPU Job lands on the cluster with room (the full one is skipped); its status, its pods and their logs are mirrored', async () => {
    const created = await call(teamA.key, 'POST', jobs, gpuJob('train-1', 1));
    const body = await created.json();
    expect(created.status, JSON.stringify(body)).toBe(201);
    expect(body.metadata.annotations).toMatchObject({ 'federation.mariner.dev/cluster': clusterB, 'federation.mariner.dev/state': 'Placed' });
    expect(serverA.objects('Job', 'team-a')).toEqual([]);
    const [real] = serverB.objects('Job', 'team-a');
    expect(real.metadata.name).toBe('train-1');
    expect(real.metadata.labels).toMatchObject({ team: 'a' });
    // The agent's namespace token never reaches a user's pod.
    expect(real.spec.template.spec.automountServiceAccountToken).toBe(false);

    // The Job controller starts a pod; the Job's status moves on the cluster.
    await gpuPod(serverB, 'team-a', 'train-1-x7k2p', 1, { 'job-name': 'train-1', 'batch.kubernetes.io/job-name': 'train-1' });
    serverB.appendLog('team-a', 'train-1-x7k2p', 'epoch 1 loss 0.42');
    serverB.endLog('team-a', 'train-1-x7k2p');
    await kubeRequest(serverB, 'PUT', '/apis/batch/v1/namespaces/team-a/jobs/train-1/status', {
      ...real,
      status: { active: 1, startTime: '2026-12-07T12:00:00Z' },
    });

    const got = await (await call(teamA.key, 'GET', `${jobs}/train-1`)).json();
    expect(got.status).toMatchObject({ active: 1 });
    expect(got.metadata.uid).toBe(real.metadata.uid);
    const list = await (await call(teamA.key, 'GET', jobs)).json();
    expect(list).toMatchObject({ kind: 'JobList', items: [{ metadata: { name: 'train-1' }, status: { active: 1 } }] });

    const pods = await (await call(teamA.key, 'GET', `/api/v1/namespaces/team-a/pods?labelSelector=${encodeURIComponent('job-name=train-1')}`)).json();
    expect(pods.items.map((p: { metadata: { name: string } }) => p.metadata.name)).toEqual(['train-1-x7k2p']);
    const logs = await call(teamA.key, 'GET', '/api/v1/namespaces/team-a/pods/train-1-x7k2p/log');
    expect(logs.status).toBe(200);
    expect(await logs.text()).toContain('epoch 1 loss 0.42');
  }, 60_000);

  it('with no room anywhere a Job waits, and is placed once a cluster reports free GPUs', async () => {
    // B now reports its pod's GPU: one free there, none on A.
    await agentB.reportStatus();
    const created = await call(teamA.key, 'POST', jobs, gpuJob('train-2', 2));
    const body = await created.json();
    expect(created.status, JSON.stringify(body)).toBe(201);
    expect(body.metadata.annotations['federation.mariner.dev/state']).toBe('Pending');
    expect(body.metadata.annotations['federation.mariner.dev/message']).toContain('2 free GPU(s)');
    expect([...serverA.objects('Job', 'team-a'), ...serverB.objects('Job', 'team-a')].map((j) => j.metadata.name)).toEqual(['train-1']);

    // The other work on A ends; A reports two free GPUs; the next read places the Job there.
    await kubeRequest(serverA, 'DELETE', '/api/v1/namespaces/busy/pods/other-work');
    // (A periodic report the agent read before the delete may land after this one: report until a read places it.)
    const got = await waitFor(
      async () => {
        await agentA.reportStatus();
        return (await call(teamA.key, 'GET', `${jobs}/train-2`)).json();
      },
      (job) => job.metadata?.annotations?.['federation.mariner.dev/state'] === 'Placed',
      'train-2 to be placed once cluster A reports its GPUs free',
    );
    expect(got.metadata.annotations['federation.mariner.dev/cluster']).toBe(clusterA);
    expect(serverA.objects('Job', 'team-a').map((j) => j.metadata.name)).toEqual(['train-2']);
  }, 60_000);

  it('a cluster that lacks the namespace is skipped for the next one with room', async () => {
    // B has the most free GPUs, but no namespace team-c: the Job goes to A.
    const created = await call(teamA.key, 'POST', '/apis/batch/v1/namespaces/team-c/jobs', gpuJob('cpu-1', 0));
    const body = await created.json();
    expect(created.status, JSON.stringify(body)).toBe(201);
    expect(body.metadata.annotations['federation.mariner.dev/cluster']).toBe(clusterA);
    expect(serverA.objects('Job', 'team-c').map((j) => j.metadata.name)).toEqual(['cpu-1']);
    expect(await (await call(teamA.key, 'DELETE', '/apis/batch/v1/namespaces/team-c/jobs/cpu-1')).json()).toMatchObject({ metadata: { name: 'cpu-1' } });
    expect(serverA.objects('Job', 'team-c')).toEqual([]);
  });

  it("another organization's project cannot read, create or delete Jobs in the namespace, nor see them in its own", async () => {
    for (const [method, path, body] of [
      ['GET', jobs, undefined],
      ['GET', `${jobs}/train-1`, undefined],
      ['POST', jobs, gpuJob('intruder', 1)],
      ['DELETE', `${jobs}/train-1`, undefined],
      ['GET', '/api/v1/namespaces/team-a/pods/train-1-x7k2p/log', undefined],
    ] as const) {
      const response = await call(other.key, method, path, body);
      expect(response.status, `${method} ${path}`).toBe(403);
      expect(await response.json()).toMatchObject({ kind: 'Status', code: 403, reason: 'Forbidden', message: expect.stringContaining('team-a') });
    }
    const own = await (await call(other.key, 'GET', '/apis/batch/v1/namespaces/other-ns/jobs')).json();
    expect(own.items).toEqual([]);
    expect(serverA.objects('Job', 'team-a').map((j) => j.metadata.name)).toEqual(['train-2']);
    const anonymous = await fetch(`${t.url}${federated}${jobs}`);
    expect(anonymous.status).toBe(401);
  });

  it('a Job that would borrow the agent’s rights (a Secret, a host path, a privileged container) is refused before any cluster sees it', async () => {
    const refused = await call(
      teamA.key,
      'POST',
      jobs,
      gpuJob('sneaky', 1, {
        volumes: [
          { name: 'host', hostPath: { path: '/' } },
          { name: 'creds', secret: { secretName: 'mariner-job-credentials' } },
        ],
      }),
    );
    expect(refused.status).toBe(403);
    const status = await refused.json();
    expect(status).toMatchObject({ kind: 'Status', reason: 'Forbidden' });
    expect(status.message).toContain('volumes[0].hostPath');
    expect(status.message).toContain('volumes[1].secret');
    const typo = await call(teamA.key, 'POST', jobs, { ...gpuJob('typo', 1), spec: { ...gpuJob('typo', 1).spec, backofLimit: 1 } });
    expect(typo.status).toBe(422);
    expect((await typo.json()).message).toContain('backofLimit');
    const notAJob = await call(teamA.key, 'POST', jobs, { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web' } });
    expect(notAJob.status).toBe(400);
    expect([...serverA.objects('Job', 'team-a'), ...serverB.objects('Job', 'team-a')].map((j) => j.metadata.name).sort()).toEqual(['train-1', 'train-2']);
  });

  it('delete propagates to the cluster the Job runs on', async () => {
    const deleted = await call(teamA.key, 'DELETE', `${jobs}/train-1`);
    expect(deleted.status).toBe(200);
    expect(serverB.objects('Job', 'team-a')).toEqual([]);
    expect((await call(teamA.key, 'GET', `${jobs}/train-1`)).status).toBe(404);
    await call(teamA.key, 'DELETE', `${jobs}/train-2`);
    expect(serverA.objects('Job', 'team-a')).toEqual([]);
    expect((await (await call(teamA.key, 'GET', jobs)).json()).items).toEqual([]);
  });

  it('a Job whose cluster is unregistered is requeued and placed on another cluster with room', async () => {
    // A has two free GPUs, B one (train-1's pod still holds the other).
    const created = await (await call(teamA.key, 'POST', jobs, gpuJob('train-3', 1))).json();
    expect(created.metadata.annotations['federation.mariner.dev/cluster']).toBe(clusterA);
    await t.gqlOk('mutation($id: ID!) { unregisterCluster(id: $id) { deleted } }', { id: clusterA });
    // The placement pass (every 10 s) finds the cluster gone and places the Job again.
    const moved = await waitFor(
      async () => (await call(teamA.key, 'GET', `${jobs}/train-3`)).json(),
      (job) => job.metadata?.annotations?.['federation.mariner.dev/cluster'] === clusterB,
      'train-3 to be placed on cluster B',
      60_000,
    );
    expect(moved.metadata.annotations['federation.mariner.dev/state']).toBe('Placed');
    expect(serverB.objects('Job', 'team-a').map((j) => j.metadata.name)).toEqual(['train-3']);
  }, 90_000);

  it('kubectl apply, get, describe, logs and delete work against a kubeconfig pointing at the federated cluster', async () => {
    const kubectl = await kubectlPath();
    // kubectl sends its token over TLS only: the platform behind a TLS front, as behind its ingress.
    const front = await startTlsFront(t.url, TEST_TLS);
    const home = mkdtempSync(path.join(tmpdir(), 'mariner-federation-'));
    try {
      const kubeconfig = path.join(home, 'config');
      writeFileSync(
        kubeconfig,
        YAML.stringify({
          apiVersion: 'v1',
          kind: 'Config',
          clusters: [
            {
              name: 'federated',
              cluster: { server: `${front.url}/v1/sessions/federated`, 'certificate-authority-data': Buffer.from(TEST_TLS.cert).toString('base64') },
            },
          ],
          users: [{ name: 'team-a', user: { token: teamA.key } }],
          contexts: [{ name: 'federated', context: { cluster: 'federated', user: 'team-a', namespace: 'team-a' } }],
          'current-context': 'federated',
        }),
      );
      const jobFile = path.join(home, 'job.yaml');
      writeFileSync(jobFile, YAML.stringify(gpuJob('eval-1', 0)));
      const run = async (...args: string[]) =>
        (await execFileAsync(kubectl, ['--kubeconfig', kubeconfig, ...args], { env: { PATH: process.env['PATH'], HOME: home }, timeout: 60_000 })).stdout;

      expect(await run('apply', '-f', jobFile)).toContain('job.batch/eval-1 created');
      // Cluster A is gone (the test before): B takes it.
      const [real] = serverB.objects('Job', 'team-a').filter((j) => j.metadata.name === 'eval-1');
      expect(real).toBeDefined();
      await gpuPod(serverB, 'team-a', 'eval-1-q8w4z', 0, { ...real.spec.template.metadata.labels, 'job-name': 'eval-1' });
      serverB.appendLog('team-a', 'eval-1-q8w4z', 'accuracy 0.91');
      serverB.endLog('team-a', 'eval-1-q8w4z');

      await kubeRequest(serverB, 'POST', '/api/v1/namespaces/team-a/events', {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name: 'eval-1.created', namespace: 'team-a' },
        involvedObject: { apiVersion: 'batch/v1', kind: 'Job', name: 'eval-1', namespace: 'team-a', uid: real.metadata.uid },
        reason: 'SuccessfulCreate',
        message: 'Created pod: eval-1-q8w4z',
        type: 'Normal',
        source: { component: 'job-controller' },
      });

      expect(await run('get', 'jobs')).toMatch(/^eval-1\b/m);
      const described = await run('describe', 'job', 'eval-1');
      expect(described).toMatch(/^Name:\s+eval-1$/m);
      expect(described).toContain('Created pod: eval-1-q8w4z');
      expect(await run('get', 'job', 'eval-1', '-o', 'jsonpath={.metadata.annotations.federation\\.mariner\\.dev/cluster}')).toBe(clusterB);
      expect(await run('get', 'pods')).toMatch(/^eval-1-q8w4z\b/m);
      expect(await run('logs', 'eval-1-q8w4z')).toContain('accuracy 0.91');
      expect(await run('delete', 'job', 'eval-1')).toContain('job.batch "eval-1" deleted');
      expect(serverB.objects('Job', 'team-a').map((j) => j.metadata.name)).not.toContain('eval-1');
      await expect(run('get', 'jobs', '-n', 'other-ns')).rejects.toMatchObject({ stderr: expect.stringContaining('not assigned to your project') });
    } finally {
      rmSync(home, { recursive: true, force: true });
      await front.close();
    }
  }, 120_000);
});
