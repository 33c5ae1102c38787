import { createClient, type Client } from 'graphql-ws';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startAgent, type Agent } from '../agent/index.js';
import { silentLogger } from '../lib/logging.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';
import { waitFor } from './support/until.js';

const b64 = (text: string) => Buffer.from(text).toString('base64');

describe('batch jobs (LLMariner /v1/batch/jobs) on the local executor', () => {
  let t: TestPlatform;
  let ws: Client;
  const agents: Agent[] = [];

  /** A REST call as `key` (the admin's by default). */
  const rest = async (method: string, path: string, body?: unknown, key = t.adminKey) => {
    const response = await fetch(`${t.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: response.status, body: (await response.json()) as any };
  };
  const finished = (id: string, key?: string) =>
    waitFor(
      () => rest('GET', `/v1/batch/jobs/${id}`, undefined, key),
      (r) => ['succeeded', 'failed', 'cancelled'].includes(r.body.status),
      `batch job ${id} to finish`,
    );

  beforeAll(async () => {
    t = await startTestPlatform({ defaultCluster: true, config: { jobs: { dispatchIntervalMs: 300, localBatchJobs: true } } });
    ws = createClient({
      url: t.graphqlUrl.replace('http://', 'ws://'),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      connectionParams: { authorization: `Bearer ${t.adminKey}` },
    });
  });
  afterAll(async () => {
    await ws?.dispose();
    await Promise.all(agents.map((a) => a.close()));
    await t?.close();
  });

  it('runs the command with its scripts, data files and envs; its output is the job log, live over graphql-ws', async () => {
    const sdk = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0 });
    const data = await sdk.files.create({ file: await toFile(Buffer.from('alpha\nbeta\n'), 'words.txt'), purpose: 'user_data' });
    const created = await rest('POST', '/v1/batch/jobs', {
      image: 'pytorch-2.1',
      command: 'sh scripts/count.sh data/words.txt',
      scripts: { 'count.sh': b64('echo "greeting=$GREETING"\necho "lines=$(wc -l < "$1")"\necho "openai=$OPENAI_BASE_URL"\n') },
      envs: { GREETING: 'hello' },
      data_files: [data.id],
    });
    expect(created.body).toMatchObject({ status: 'queued' });
    expect(created.status).toBe(200);
    expect(created.body).toMatchObject({
      status: 'queued',
      image: 'pytorch/pytorch:2.1.2-cuda12.1-cudnn8-runtime',
      envs: { GREETING: 'hello' },
      data_files: [data.id],
      scripts: ['count.sh'],
      kind: { pytorch: { worker_count: 1 } },
    });

    const lines: string[] = [];
    await new Promise<void>((resolve, reject) => {
      ws.subscribe<{ jobLogs: { lines: { text: string }[]; job: { status: string; image?: string } } }>(
        {
          query: `subscription($id: ID!) { jobLogs(jobId: $id) { lines { text } job { status ... on BatchJob { image } } } }`,
          variables: { id: created.body.id },
        },
        {
          next: (r) => (r.errors ? reject(new Error(JSON.stringify(r.errors))) : lines.push(...r.data!.jobLogs.lines.map((l) => l.text))),
          error: reject,
          complete: resolve,
        },
      );
    });
    expect(lines).toContain('greeting=hello');
    expect(lines).toContain('lines=2');
    expect(lines).toContain(`openai=${t.url}/v1`);
    expect((await finished(created.body.id)).body.status).toBe('succeeded');

    const list = await rest('GET', '/v1/batch/jobs');
    expect(list.body).toMatchObject({ has_more: false, total_items: 1 });
    expect(list.body.jobs[0].id).toBe(created.body.id);
    // Fine-tuning lists do not show batch jobs, and the other way round.
    expect((await sdk.fineTuning.jobs.list()).data).toEqual([]);

    expect((await rest('DELETE', `/v1/batch/jobs/${created.body.id}`)).body).toEqual({ id: created.body.id, object: 'batch.job', deleted: true });
    expect((await rest('GET', `/v1/batch/jobs/${created.body.id}`)).status).toBe(404);
  });

  it("a job's command sees its own envs and what a process needs to run, none of the agent's secrets", async () => {
    const canary = 's3cr3t-canary';
    const secrets = [
      'MARINER_REGISTRATION_KEY',
      'MARINER_INTERNAL_TOKEN_SECRET',
      'DATABASE_URL',
      'AWS_SECRET_ACCESS_KEY',
      'HF_TOKEN',
      'OPENAI_API_KEY',
      'PAYMENTS_SECRET',
    ];
    const saved = Object.fromEntries(secrets.map((name) => [name, process.env[name]]));
    for (const name of secrets) process.env[name] = `${canary}-${name}`;
    try {
      const created = await rest('POST', '/v1/batch/jobs', {
        image: 'pytorch-2.1',
        // Prints the names of the variables holding a canary, then what the job should have.
        command: `env | grep ${canary} | cut -d= -f1 | sed 's/^/leaked=/'; echo "greeting=$GREETING"; echo "job=$MARINER_JOB_ID"; echo "home=$HOME"; echo "done"`,
        envs: { GREETING: 'hello' },
      });
      expect(created.status).toBe(200);
      const lines: string[] = [];
      await new Promise<void>((resolve, reject) => {
        ws.subscribe<{ jobLogs: { lines: { text: string }[] } }>(
          { query: `subscription($id: ID!) { jobLogs(jobId: $id) { lines { text } } }`, variables: { id: created.body.id } },
          {
            next: (r) => (r.errors ? reject(new Error(JSON.stringify(r.errors))) : lines.push(...r.data!.jobLogs.lines.map((l) => l.text))),
            error: reject,
            complete: resolve,
          },
        );
      });
      expect((await finished(created.body.id)).body.status).toBe('succeeded');
      expect(lines).toContain('done'); // `env`, `grep` and the rest were found on PATH
      expect(lines.filter((line) => line.startsWith('leaked='))).toEqual([]);
      expect(lines.join('\n')).not.toContain(canary);
      expect(lines).toEqual(expect.arrayContaining(['greeting=hello', `job=${created.body.id}`, `home=${process.env['HOME'] ?? ''}`]));
    } finally {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });

  it('fails with the command’s last output; a running job can be cancelled but not deleted', async () => {
    const failing = await rest('POST', '/v1/batch/jobs', { image: 'busybox:1.36', command: 'echo starting; echo "no GPU found" >&2; exit 4' });
    const failed = await finished(failing.body.id);
    expect(failed.body.status).toBe('failed');
    expect(failed.body.error.message.split('\n')).toEqual(expect.arrayContaining(['the command exited with code 4', 'no GPU found']));

    const long = await rest('POST', '/v1/batch/jobs', { image: 'busybox:1.36', command: 'echo up; sleep 30' });
    await waitFor(
      () => rest('GET', `/v1/batch/jobs/${long.body.id}`),
      (r) => r.body.status === 'running',
      'the job to run',
    );
    const refused = await rest('DELETE', `/v1/batch/jobs/${long.body.id}`);
    expect(refused).toMatchObject({ status: 400, body: { error: { message: expect.stringContaining('cancel it first') } } });
    expect((await rest('POST', `/v1/batch/jobs/${long.body.id}/cancel`)).status).toBe(200);
    expect((await finished(long.body.id)).body.status).toBe('cancelled');
  });

  it('refuses bad input with the parameter named, and creates nothing', async () => {
    const before = (await rest('GET', '/v1/batch/jobs')).body.total_items;
    const cases: [Record<string, unknown>, string][] = [
      [{ command: 'true' }, 'image'],
      [{ image: 'no-such-preset', command: 'true' }, 'image'],
      [{ image: 'pytorch-2.1', command: 'true', envs: { 'BAD-NAME': 'x' } }, 'envs.0.name'],
      [{ image: 'pytorch-2.1', command: 'true', envs: { RANK: '3' } }, 'envs.0.name'],
      [{ image: 'pytorch-2.1', command: 'true', scripts: { '../escape.sh': b64('x') } }, 'scripts.0.name'],
      [{ image: 'pytorch-2.1', command: 'true', scripts: { 'big.bin': b64('x'.repeat(1024 * 1024 + 1)) } }, 'scripts'],
      [{ image: 'pytorch-2.1', command: 'true', data_files: ['file-doesnotexist'] }, 'data_files.0'],
      [{ image: 'pytorch-2.1', command: 'true', kind: { pytorch: { worker_count: 0 } } }, 'worker_count'],
    ];
    for (const [body, param] of cases) {
      const response = await rest('POST', '/v1/batch/jobs', body);
      expect(response.status, JSON.stringify(body).slice(0, 80)).toBe(400);
      expect(response.body.error.param).toBe(param);
    }
    expect((await rest('GET', '/v1/batch/jobs')).body.total_items).toBe(before);
  });

  it('keeps jobs per project, and a cluster that does not allow local commands refuses them clearly', async () => {
    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "no-commands" }) { registrationKey cluster { id } } }');
    const agent = await startAgent({ controlPlaneUrl: t.url, registrationKey: registerCluster.registrationKey, executor: 'local', logger: silentLogger() });
    agents.push(agent);
    await agent.reportStatus();
    const other = await projectWithKey(t, 'batch-other', { assignments: [{ clusterId: registerCluster.cluster.id, namespace: 'jobs' }] });
    const mine = await rest('POST', '/v1/batch/jobs', { image: 'busybox:1.36', command: 'true' });
    expect((await rest('GET', `/v1/batch/jobs/${mine.body.id}`, undefined, other.key)).status).toBe(404);
    expect((await rest('POST', `/v1/batch/jobs/${mine.body.id}/cancel`, undefined, other.key)).status).toBe(404);

    const theirs = await rest('POST', '/v1/batch/jobs', { image: 'busybox:1.36', command: 'true' }, other.key);
    expect(theirs.body).toMatchObject({ cluster_id: registerCluster.cluster.id, kubernetes_namespace: 'jobs' });
    const refused = await finished(theirs.body.id, other.key);
    expect(refused.body).toMatchObject({ status: 'failed', error: { code: 'dispatch_refused', message: expect.stringContaining('MARINER_LOCAL_BATCH_JOBS') } });
  });

  it('shows the clusters the project can use, and job counts over time that agree with the jobs', async () => {
    const { body: clusters } = await rest('GET', '/v1/jobs/clusters');
    const defaultCluster = clusters.clusters.find((c: { name: string }) => c.name === 'default');
    expect(defaultCluster).toMatchObject({ namespaces: ['default'], stale: false, summary: { gpu_capacity: expect.any(Number), gpu_pod_count: 0 } });
    expect(defaultCluster.last_updated_at).toBeGreaterThan(0);

    const { body: list } = await rest('GET', '/v1/batch/jobs?limit=100');
    const now = Math.floor(Date.now() / 1000);
    const { status, body } = await rest(
      'GET',
      `/v1/jobs/summaries?filter.start_timestamp=${now - 3600}&filter.end_timestamp=${now + 60}&filter.duration=1830s`,
    );
    expect(status).toBe(200);
    expect(body.datapoints).toHaveLength(2);
    // LLMariner's JSON: JOB_TYPE_BATCH, int64 counts as strings (test/llmarinerContract.test.ts checks the shape).
    const batch = body.datapoints.flatMap((p: { values: { job_type: string }[] }) => p.values.filter((v) => v.job_type === 'JOB_TYPE_BATCH'));
    const sum = (field: string) => batch.reduce((total: number, v: Record<string, string>) => total + Number(v[field]!), 0);
    const count = (state: string) => list.jobs.filter((j: { status: string }) => j.status === state).length;
    expect(sum('total_created')).toBe(list.total_items);
    expect(sum('total_completed')).toBe(count('succeeded'));
    expect(sum('total_failed')).toBe(count('failed'));
    expect(sum('total_cancelled')).toBe(count('cancelled'));
    const bad = await rest('GET', '/v1/jobs/summaries?filter.duration=10s');
    expect(bad).toMatchObject({ status: 400, body: { error: { param: 'filter.duration' } } });
  });

  it('refuses notebooks on the local executor with the reason, and deletes them', async () => {
    const created = await rest('POST', '/v1/workspaces/notebooks', { name: 'local-lab', image: { type: 'jupyter-lab-base' } });
    expect(created.status).toBe(200);
    const failed = await waitFor(
      () => rest('GET', `/v1/workspaces/notebooks/${created.body.id}`),
      (r) => r.body.status !== 'QUEUED',
      'the notebook to be refused',
    );
    expect(failed.body).toMatchObject({
      status: 'FAILED',
      error: { code: 'dispatch_refused', message: expect.stringContaining('notebooks need a Kubernetes cluster') },
    });
    expect((await rest('DELETE', `/v1/workspaces/notebooks/${created.body.id}`)).status).toBe(200);
    await waitFor(
      () => rest('GET', `/v1/workspaces/notebooks/${created.body.id}`),
      (r) => r.status === 404,
      'the notebook to be deleted',
    );
    expect((await rest('GET', '/v1/workspaces/notebooks')).body).toMatchObject({ notebooks: [], total_items: 0 });
  });

  it("jobsUpdated follows the project's jobs, not its notebooks", async () => {
    const seen: { id: string; status: string }[] = [];
    const errors: unknown[] = [];
    const stop = ws.subscribe<{ jobsUpdated: { id: string; status: string } }>(
      { query: 'subscription { jobsUpdated { id status } }' },
      { next: (r) => (r.errors ? errors.push(r.errors) : seen.push(r.data!.jobsUpdated)), error: (e) => errors.push(e), complete: () => undefined },
    );
    // A notebook first (its updates must not reach this feed), then a batch job.
    const notebook = await rest('POST', '/v1/workspaces/notebooks', { name: 'feed-lab', image: { type: 'jupyter-lab-base' } });
    const job = await rest('POST', '/v1/batch/jobs', { image: 'busybox:1.36', command: 'echo hi' });
    await waitFor(
      async () => seen,
      (s) => s.some((u) => u.id === job.body.id && u.status === 'SUCCEEDED'),
      'the batch job to finish in the feed',
    );
    stop();
    expect(errors).toEqual([]);
    expect(seen.every((u) => u.id === job.body.id)).toBe(true);
    expect(seen.some((u) => u.id === notebook.body.id)).toBe(false);
  });
});
