import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startAgent, type Agent } from '../../agent/index.js';
import { jobObjectName } from '../../agent/kubernetes/jobManifests.js';
import { JOB_ID_LABEL } from '../../lib/jobSpec.js';
import { silentLogger } from '../../lib/logging.js';
import { kubeConfigFor, kubeRequest, startKubeApiServer, TEST_TLS, type KubeApiServer } from '../support/kubeApiServer.js';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { projectWithKey } from '../support/tenants.js';
import { startTlsFront } from '../support/tlsFront.js';
import { until, waitFor } from '../support/until.js';
import { cliCommand, cliHome, runCli, screenShows, tmuxSession, type CliResult } from './cliProcess.js';

/** A platform, the Kubernetes API double and an agent on it: what `batch jobs exec` needs end to end. */
interface Site {
  t: TestPlatform;
  kube: KubeApiServer;
  agent: Agent;
  clusterId: string;
  kubeconfigDir: string;
}

async function startSite(allowExec: boolean, namespaces: string[], options: { defaultCluster?: boolean } = {}): Promise<Site> {
  const kube = await startKubeApiServer({ nodes: [{ name: 'gpu-node', gpus: 2 }] });
  for (const name of namespaces) await kubeRequest(kube, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  const t = await startTestPlatform({
    ...(options.defaultCluster ? { defaultCluster: true } : {}),
    config: { sessions: { allowExec }, jobs: { dispatchIntervalMs: 200, localBatchJobs: true } },
  });
  const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "k8s" }) { registrationKey cluster { id } } }');
  const kubeconfigDir = mkdtempSync(path.join(tmpdir(), 'mariner-kubeconfig-'));
  writeFileSync(path.join(kubeconfigDir, 'config'), kubeConfigFor(kube).exportConfig());
  const agent = await startAgent({
    controlPlaneUrl: t.url,
    registrationKey: registerCluster.registrationKey,
    executor: 'kubernetes',
    kubeconfig: path.join(kubeconfigDir, 'config'),
    jobs: { kubernetes: { pollIntervalMs: 100 } },
    backoff: { initialMs: 10, maxMs: 50 },
    logger: silentLogger(),
  });
  await agent.whenConnected();
  return { t, kube, agent, clusterId: registerCluster.cluster.id, kubeconfigDir };
}

async function stopSite(site: Site | undefined): Promise<void> {
  await site?.agent.close();
  await site?.t.close();
  await site?.kube.close();
  if (site) rmSync(site.kubeconfigDir, { recursive: true, force: true });
}

/**
 * The double runs no Job controller: the pod the executor's Job would get for a worker, with the Job's
 * template labels and, for an Indexed Job, the completion index the Job controller adds; Running unless
 * told otherwise (the agent then reports the job RUNNING).
 */
async function jobPod(kube: KubeApiServer, namespace: string, jobId: string, options: { worker?: number; phase?: string } = {}): Promise<string> {
  const job = await waitFor<any>(
    async () => kube.objects('Job', namespace).find((j) => j.metadata.name === jobObjectName(jobId)),
    Boolean,
    `the Kubernetes Job of ${jobId}`,
  );
  expect(job.spec.template.metadata.labels[JOB_ID_LABEL]).toBe(jobId);
  const worker = options.worker ?? 0;
  const indexed = job.spec.completionMode === 'Indexed' ? { [COMPLETION_INDEX]: String(worker) } : {};
  const name = `${job.metadata.name}-${worker}-x7k2p`;
  await kubeRequest(kube, 'POST', `/api/v1/namespaces/${namespace}/pods`, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels: { ...job.spec.template.metadata.labels, 'job-name': job.metadata.name, ...indexed }, annotations: indexed },
    spec: job.spec.template.spec,
  });
  const pod = await kubeRequest(kube, 'GET', `/api/v1/namespaces/${namespace}/pods/${name}`);
  await kubeRequest(kube, 'PUT', `/api/v1/namespaces/${namespace}/pods/${name}/status`, {
    ...pod,
    status: { ...pod.status, phase: options.phase ?? 'Running' },
  });
  return name;
}

const COMPLETION_INDEX = 'batch.kubernetes.io/job-completion-index';

/**
 * Issue 19: `mariner batch jobs exec JOB -- COMMAND`, as a person runs it: the CLI (behind TLS, as
 * behind an ingress) finds the job's running pod through /v1/sessions and execs into it over the
 * channel.k8s.io WebSocket protocol; the Kubernetes API double stands in for the cluster (its exec echoes
 * stdin like cat, and `sh -c 'exit N'` exits N).
 */
describe('mariner batch jobs exec', () => {
  let site: Site;
  let front: { url: string; close(): Promise<void> };
  let home: string;
  let env: NodeJS.ProcessEnv;
  let team: { key: string };
  let other: { key: string };
  let jobId: string;
  let pod: string;
  const cli = (args: string[], options: { key?: string; input?: string } = {}): Promise<CliResult> =>
    runCli({ ...env, MARINER_URL: front.url, MARINER_API_KEY: options.key ?? team.key }, args, {
      cwd: home,
      ...(options.input !== undefined ? { input: options.input } : {}),
    });
  const execRequests = () => site.kube.requests.filter((r) => r.path.includes('/exec?'));

  beforeAll(async () => {
    site = await startSite(true, ['team-a', 'team-b']);
    team = await projectWithKey(site.t, 'exec-team', { role: 'OWNER', assignments: [{ clusterId: site.clusterId, namespace: 'team-a' }] });
    other = await projectWithKey(site.t, 'exec-other', { role: 'OWNER', assignments: [{ clusterId: site.clusterId, namespace: 'team-b' }] });
    front = await startTlsFront(site.t.url, TEST_TLS);
    ({ home, env } = cliHome());
    const caFile = path.join(home, 'platform-ca.pem');
    writeFileSync(caFile, TEST_TLS.cert);
    env = { ...env, NODE_EXTRA_CA_CERTS: caFile };
  }, 90_000);
  afterAll(async () => {
    await front?.close();
    await stopSite(site);
    if (home) rmSync(home, { recursive: true, force: true });
  });

  it('a job not running yet is refused with a pointer to its logs; once its pod runs, stdin reaches the command and its output comes back', async () => {
    const created = await cli(['batch', 'jobs', 'create', '--image', 'busybox:1.36', '--command', 'sleep 3600', '-o', 'json']);
    expect(created.code, created.stderr).toBe(0);
    jobId = JSON.parse(created.stdout).id;

    const early = await cli(['batch', 'jobs', 'exec', jobId, '-i', '--', 'cat'], { input: 'too early\n' });
    expect(early.code).toBe(1);
    expect(early.stderr).toContain(`job ${jobId} is queued`);
    expect(early.stderr).toContain(`mariner batch jobs logs ${jobId} -f`);
    expect(early.stderr).toContain('(FAILED_PRECONDITION)');
    expect(execRequests()).toEqual([]);

    pod = await jobPod(site.kube, 'team-a', jobId);
    await waitFor(
      async () => JSON.parse((await cli(['batch', 'jobs', 'get', jobId, '-o', 'json'])).stdout).status,
      (s) => s === 'RUNNING',
      'the job running',
    );
    const echoed = await cli(['batch', 'jobs', 'exec', jobId, '-i', '--', 'cat'], { input: 'hello\n' });
    expect(echoed, echoed.stderr).toMatchObject({ code: 0, stdout: 'hello\n' });
    expect(echoed.stderr.trim()).toBe('');
    const [request] = execRequests();
    const url = new URL(request!.path, 'http://kube');
    expect(url.pathname).toBe(`/api/v1/namespaces/team-a/pods/${pod}/exec`);
    expect(url.searchParams.getAll('command')).toEqual(['cat']);
    expect(url.searchParams.get('stdin')).toBe('true');
    expect(request!.headers['sec-websocket-protocol']).toMatch(/^v5\.channel\.k8s\.io, ?v4\.channel\.k8s\.io$/);
  }, 120_000);

  it("the command's exit status is the CLI's, as with kubectl exec", async () => {
    const three = await cli(['batch', 'jobs', 'exec', jobId, '--', 'sh', '-c', 'exit 3']);
    expect(three.code).toBe(3);
    expect(three.stderr).toContain('command terminated with exit code 3');
    expect((await cli(['batch', 'jobs', 'exec', jobId, '--', 'false'])).code).toBe(1);
    expect((await cli(['batch', 'jobs', 'exec', jobId, '--', 'sh', '-c', 'exit 0'])).code).toBe(0);
  }, 60_000);

  it('-t in a terminal: raw mode (Ctrl-C goes to the command, not to the CLI), its size sent and followed, and the terminal restored after', async () => {
    const sizesBefore = site.kube.terminalSizes.length;
    const requestsBefore = execRequests().length;
    const cliEnv = { ...env, MARINER_URL: front.url, MARINER_API_KEY: team.key };
    // After the CLI: whether the terminal is canonical again (`icanon`) or left raw (`-icanon`).
    const term = tmuxSession(
      `(${cliCommand(cliEnv, `batch jobs exec ${jobId} -it -- cat`)}; code=$?; stty -a | tr ' ' '\\n' | grep -x -- '-\\{0,1\\}icanon'; exit $code)`,
    );
    try {
      await until(() => site.kube.terminalSizes.length > sizesBefore, 'the terminal size on the resize channel', 30_000);
      expect(site.kube.terminalSizes.at(-1)).toMatchObject({ pod, width: 120, height: expect.any(Number) });
      term.resize(100, 30);
      await until(() => site.kube.terminalSizes.at(-1)?.width === 100, 'the new size after the window was resized', 30_000);
      expect(site.kube.terminalSizes.at(-1)).toMatchObject({ pod, width: 100, height: 30 });
      term.text('typed');
      await screenShows(term.screen, (text) => text.includes('typed'), 'the echo of what was typed');
      term.keys('C-c');
      term.keys('C-d');
      const screen = await screenShows(term.screen, (text) => text.includes('[exited'), 'the CLI to exit');
      // cat's echo ends without a newline; stty's answer follows it on the same line.
      expect(screen).toMatch(/typedicanon\n\[exited 0\]/);
    } finally {
      term.close();
    }
    const url = new URL(execRequests()[requestsBefore]!.path, 'http://kube');
    expect(url.searchParams.get('tty')).toBe('true');
    expect(url.searchParams.get('stderr')).toBeNull();
  }, 60_000);

  it('a worker the job does not have, and a job that does not exist, are named', async () => {
    const missing = await cli(['batch', 'jobs', 'exec', jobId, '--worker', '1', '--', 'cat']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`job ${jobId} has one worker (0)`);
    const unknown = await cli(['batch', 'jobs', 'exec', 'batchjob-nosuchjob', '--', 'cat']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('not found (NOT_FOUND)');
  }, 60_000);

  it("another organization's owner cannot exec into the job: not found, and nothing reaches the cluster", async () => {
    const before = site.kube.requests.length;
    const theirs = await cli(['batch', 'jobs', 'exec', jobId, '-i', '--', 'cat'], { key: other.key, input: 'stolen\n' });
    expect(theirs.code).toBe(1);
    expect(theirs.stderr).toContain('(NOT_FOUND)');
    expect(theirs.stdout).toBe('');
    // Naming the pod directly through /v1/sessions does not help either: the namespace is not theirs.
    const ws = new WebSocket(
      `${site.t.url.replace('http:', 'ws:')}/v1/sessions/${site.clusterId}/api/v1/namespaces/team-a/pods/${pod}/exec?command=cat&stdin=true`,
      ['v5.channel.k8s.io'],
      { headers: { authorization: `Bearer ${other.key}` } },
    );
    ws.on('error', () => undefined);
    const status = await new Promise<number>((resolve) => ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
    expect(status).toBe(403);
    expect(site.kube.requests.slice(before).filter((r) => r.path.includes(pod))).toEqual([]);
  }, 60_000);

  it('a finished job is refused with a pointer to its logs', async () => {
    const cancelled = await cli(['batch', 'jobs', 'cancel', jobId]);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    await waitFor(
      async () => JSON.parse((await cli(['batch', 'jobs', 'get', jobId, '-o', 'json'])).stdout).status,
      (s) => s === 'CANCELLED',
      'the job cancelled',
    );
    const finished = await cli(['batch', 'jobs', 'exec', jobId, '--', 'cat']);
    expect(finished.code).toBe(1);
    expect(finished.stderr).toContain(`job ${jobId} has cancelled`);
    expect(finished.stderr).toContain(`mariner batch jobs logs ${jobId}`);
  }, 60_000);

  it("--worker N execs into that worker's pod of a multi-worker job; a worker whose pod is not running is named", async () => {
    const created = await cli(['batch', 'jobs', 'create', '--image', 'busybox:1.36', '--command', 'sleep 3600', '--workers', '2', '--gpus', '0', '-o', 'json']);
    expect(created.code, created.stderr).toBe(0);
    const id = JSON.parse(created.stdout).id;
    await jobPod(site.kube, 'team-a', id, { worker: 0, phase: 'Pending' });
    const second = await jobPod(site.kube, 'team-a', id, { worker: 1 });
    await waitFor(
      async () => JSON.parse((await cli(['batch', 'jobs', 'get', id, '-o', 'json'])).stdout).status,
      (s) => s === 'RUNNING',
      'the job running',
    );
    const before = execRequests().length;
    const echoed = await cli(['batch', 'jobs', 'exec', id, '--worker', '1', '-i', '--', 'cat'], { input: 'rank 1\n' });
    expect(echoed, echoed.stderr).toMatchObject({ code: 0, stdout: 'rank 1\n' });
    expect(
      execRequests()
        .slice(before)
        .map((r) => new URL(r.path, 'http://kube').pathname),
    ).toEqual([`/api/v1/namespaces/team-a/pods/${second}/exec`]);
    const pending = await cli(['batch', 'jobs', 'exec', id, '--', 'cat']);
    expect(pending.code).toBe(1);
    expect(pending.stderr).toContain(`worker 0 of job ${id} is not running: its pod ${jobObjectName(id)}-0-x7k2p is pending (FAILED_PRECONDITION)`);
    expect((await cli(['batch', 'jobs', 'exec', id, '--worker', '2', '--', 'cat'])).stderr).toContain(`job ${id} has 2 workers (0 to 1)`);
    expect((await cli(['batch', 'jobs', 'cancel', id])).code).toBe(0);
  }, 90_000);
});

describe('mariner batch jobs exec where the platform does not allow it', () => {
  let site: Site;
  let home: string;
  let env: NodeJS.ProcessEnv;
  let team: { key: string };
  const cli = (args: string[], key: string): Promise<CliResult> => runCli({ ...env, MARINER_URL: site.t.url, MARINER_API_KEY: key }, args, { cwd: home });

  beforeAll(async () => {
    // MARINER_SESSIONS_EXEC left at its default (off); the platform's own local cluster runs batch jobs as processes.
    site = await startSite(false, ['team-a'], { defaultCluster: true });
    team = await projectWithKey(site.t, 'exec-team', { role: 'OWNER', assignments: [{ clusterId: site.clusterId, namespace: 'team-a' }] });
    ({ home, env } = cliHome());
  }, 90_000);
  afterAll(async () => {
    await stopSite(site);
    if (home) rmSync(home, { recursive: true, force: true });
  });

  it('exec turned off by the operator: the message says to ask for MARINER_SESSIONS_EXEC, and nothing reaches the cluster', async () => {
    const created = await cli(['batch', 'jobs', 'create', '--image', 'busybox:1.36', '--command', 'sleep 3600', '-o', 'json'], team.key);
    const jobId = JSON.parse(created.stdout).id;
    await jobPod(site.kube, 'team-a', jobId);
    await waitFor(
      async () => JSON.parse((await cli(['batch', 'jobs', 'get', jobId, '-o', 'json'], team.key)).stdout).status,
      (s) => s === 'RUNNING',
      'the job running',
    );
    const refused = await cli(['batch', 'jobs', 'exec', jobId, '--', 'cat'], team.key);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('ask its operator');
    expect(refused.stderr).toContain('MARINER_SESSIONS_EXEC');
    expect(refused.stderr).toContain('global.sessions.allowExec');
    expect(refused.stderr).toContain('(FORBIDDEN)');
    expect(site.kube.requests.filter((r) => r.path.includes('/exec'))).toEqual([]);
  }, 120_000);

  it('a job on a cluster whose agent runs local processes: exec needs a Kubernetes cluster', async () => {
    const { clusters } = await site.t.gqlOk('{ clusters { items { id } } }');
    const local = clusters.items.map((c: { id: string }) => c.id).find((id: string) => id !== site.clusterId);
    const onLocal = await projectWithKey(site.t, 'local-team', { role: 'OWNER', assignments: [{ clusterId: local, namespace: 'local-team' }] });
    const created = await cli(['batch', 'jobs', 'create', '--image', 'busybox:1.36', '--command', 'sleep 60', '--gpus', '0', '-o', 'json'], onLocal.key);
    expect(created.code, created.stderr).toBe(0);
    const jobId = JSON.parse(created.stdout).id;
    const job = await waitFor(
      async () => JSON.parse((await cli(['batch', 'jobs', 'get', jobId, '-o', 'json'], onLocal.key)).stdout),
      (j) => j.status === 'RUNNING',
      'the local job running',
    );
    expect(job.clusterId).toBe(local);
    const refused = await cli(['batch', 'jobs', 'exec', jobId, '--', 'cat'], onLocal.key);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('runs jobs as local processes: exec needs a Kubernetes cluster');
    expect(refused.stderr).toContain('(FAILED_PRECONDITION)');
    expect((await cli(['batch', 'jobs', 'cancel', jobId], onLocal.key)).code).toBe(0);
  }, 120_000);
});
