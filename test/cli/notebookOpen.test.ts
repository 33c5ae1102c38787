import { readFileSync, chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent, type Executor } from '../../agent/index.js';
import { silentLogger } from '../../lib/logging.js';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { projectWithKey } from '../support/tenants.js';
import { waitFor } from '../support/until.js';
import { cliHome, runCli, type CliResult } from './cliProcess.js';

/**
 * An executor that takes every job and runs nothing, as a Kubernetes cluster whose notebook's pod is
 * still starting: the test then reports the notebook running as that cluster's agent would.
 */
function acceptingExecutor(started: Set<string>): Executor {
  return {
    kind: 'local',
    kubeApi: null,
    runtimes: null,
    jobs: {
      start: async (job) => {
        started.add(job.id);
        return 'started';
      },
      cancel: async (id) => started.delete(id),
      stop: async (job) => started.has(job.id),
      resume: async (job) => started.has(job.id),
      remove: async (job) => started.delete(job.id),
      has: async (job) => started.has(job.id),
      close: async () => undefined,
    },
    clusterStatus: async () => ({
      nodes: [{ name: 'node-1', ready: true, gpuCapacity: 0, gpuAllocatable: 0, gpuProduct: null, cpuCores: 8, memoryBytes: 32e9 }],
      gpuCapacity: 0,
      gpuAllocated: 0,
      gpuPods: [],
      provisionableResources: [],
    }),
    applyConfig: async () => undefined,
    close: async () => undefined,
  };
}

/**
 * Issue 19: `mariner notebooks open` on a running notebook opens the browser at the platform's notebook
 * route with a one-time sign-in link (`--no-browser` prints it) that the route admits and that holds no API
 * key. A link with a ticket made with another organization's owner's key is refused (the namespace is not
 * theirs), and they cannot get one for it through the command.
 */
describe('mariner notebooks open', () => {
  let t: TestPlatform;
  let agent: Agent;
  let home: string;
  let env: NodeJS.ProcessEnv;
  let registrationKey: string;
  let other: { key: string };
  const started = new Set<string>();
  const cli = (args: string[], key = t.adminKey, extraEnv: NodeJS.ProcessEnv = {}): Promise<CliResult> =>
    runCli({ ...env, ...extraEnv, MARINER_URL: t.url, MARINER_API_KEY: key }, args, { cwd: home });
  const json = async (args: string[]) => {
    const result = await cli([...args, '-o', 'json']);
    if (result.code !== 0) throw new Error(`mariner ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
    return JSON.parse(result.stdout);
  };

  beforeAll(async () => {
    t = await startTestPlatform({ config: { jobs: { dispatchIntervalMs: 200 } } });
    ({ home, env } = cliHome());
    other = await projectWithKey(t, 'Other Org', { role: 'OWNER' });
    const { registerCluster } = await t.gqlOk<{ registerCluster: { registrationKey: string } }>(
      'mutation { registerCluster(input: { name: "lab" }) { registrationKey } }',
    );
    registrationKey = registerCluster.registrationKey;
    agent = await startAgent({ controlPlaneUrl: t.url, registrationKey, executor: acceptingExecutor(started), logger: silentLogger() });
    await agent.whenConnected();
    await agent.reportStatus();
  }, 60_000);
  afterAll(async () => {
    await agent?.close();
    await t?.close();
  });

  it('refuses a notebook not yet running, then opens a running one signed in; another organization gets no way in', async () => {
    const created = await json(['notebooks', 'create', 'lab', '--port', '8050']);
    const queued = await cli(['notebooks', 'open', 'lab', '--no-browser']);
    expect(queued.code).toBe(1);
    expect(queued.stderr).toContain('not running');

    // The cluster's agent has it; its pod comes up, and the agent says so.
    await waitFor(
      async () => started.has(created.id),
      (has) => has,
      "the notebook to reach the cluster's agent",
      60_000,
    );
    await t.gqlOk(
      'mutation($input: JobStatusReportInput!) { reportJobStatus(input: $input) { status } }',
      { input: { jobId: created.id, phase: 'RUNNING' } },
      { token: registrationKey },
    );
    const running = await json(['notebooks', 'get', 'lab']);
    expect(running.status).toBe('RUNNING');
    const base = `${t.url}/v1/sessions/${running.clusterId}/v1/services/notebooks/${created.id}/${running.kubernetesNamespace}`;

    // No browser here: the sign-in URL is printed, with how long it works. It holds a ticket, not the key.
    const printed = await cli(['notebooks', 'open', 'lab', '--no-browser']);
    expect(printed.code, printed.stderr).toBe(0);
    expect(printed.stderr).toContain('within a minute');
    expect(printed.stdout).not.toContain(t.adminKey);
    const signIn = new URL(printed.stdout.trim());
    expect(`${signIn.origin}${signIn.pathname}`).toBe(`${base}/lab`);
    expect([...signIn.searchParams.keys()]).toEqual(['login_ticket', 'token']);
    expect(Buffer.from(signIn.searchParams.get('login_ticket')!, 'base64url').toString('latin1')).not.toContain(t.adminKey);
    expect(signIn.searchParams.get('token')).toBe(running.token);
    // -o json: the same link.
    const asJson = await json(['notebooks', 'open', 'lab', '--no-browser']);
    expect(asJson).toMatchObject({ id: created.id, url: `${base}/lab`, opened: false, signInUrl: expect.stringContaining('login_ticket=') });
    expect(JSON.stringify(asJson)).not.toContain(t.adminKey);

    // The link is one the platform admits: its credential passes the notebook route's checks (this test's
    // cluster has no Kubernetes API behind its agent, so the route goes no further than looking for the pod's Service).
    const visit = await fetch(signIn, { redirect: 'manual', headers: { 'sec-fetch-site': 'none' } });
    expect(await visit.text()).toContain(`Cluster ${running.clusterId} runs no notebooks`);

    // With a browser: xdg-open gets the sign-in URL, stdout only the page.
    const bin = path.join(home, 'bin');
    mkdirSync(bin, { recursive: true });
    const opened = path.join(home, 'opened.txt');
    writeFileSync(path.join(bin, 'xdg-open'), `#!/bin/sh\nprintf '%s' "$1" > '${opened}'\n`);
    chmodSync(path.join(bin, 'xdg-open'), 0o755);
    const viaBrowser = await cli(['notebooks', 'open', created.id, '--port', '8050'], t.adminKey, { PATH: `${bin}:${env['PATH']}` });
    expect(viaBrowser.code, viaBrowser.stderr).toBe(0);
    expect(viaBrowser.stdout).toBe(`Opened ${base}/8050/ in the browser\n`);
    expect(viaBrowser.stdout).not.toContain(t.adminKey);
    await waitFor(
      async () => {
        try {
          return readFileSync(opened, 'utf8');
        } catch {
          return '';
        }
      },
      (url) => url.length > 0,
      'xdg-open to be run',
    );
    const browserUrl = new URL(readFileSync(opened, 'utf8'));
    expect(`${browserUrl.origin}${browserUrl.pathname}`).toBe(`${base}/8050/`);
    expect(browserUrl.href).not.toContain(t.adminKey);
    expect([...browserUrl.searchParams.keys()]).toEqual(['login_ticket']);
    const portVisit = await fetch(browserUrl, { redirect: 'manual', headers: { 'sec-fetch-site': 'none' } });
    expect(await portVisit.text()).toContain(`Cluster ${running.clusterId} runs no notebooks`);
    const badPort = await cli(['notebooks', 'open', 'lab', '--port', '9999', '--no-browser']);
    expect(badPort.code).toBe(2);
    expect(badPort.stderr).toContain('exposes ports 8888, 8050');

    // Another organization's owner: no notebook to open, and a ticket of their own key in the link signs nobody in.
    const theirs = await cli(['notebooks', 'open', created.id, '--no-browser'], other.key);
    expect(theirs.code).toBe(1);
    expect(theirs.stdout).toBe('');
    const minted = await fetch(`${t.url}/v1/sessions/login_tickets`, {
      method: 'POST',
      headers: { authorization: `Bearer ${other.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ path: signIn.pathname }),
    });
    expect(minted.status).toBe(201);
    const forged = new URL(signIn);
    forged.searchParams.set('login_ticket', ((await minted.json()) as { ticket: string }).ticket);
    const refused = await fetch(forged, { redirect: 'manual', headers: { 'sec-fetch-site': 'none' } });
    expect(refused.status).toBe(403);
    expect(await refused.text()).toContain('is not assigned to your project');
    expect(refused.headers.get('set-cookie') ?? '').not.toMatch(/mariner_session=[^;]+;/);
  }, 180_000);
});
