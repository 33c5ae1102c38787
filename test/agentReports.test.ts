import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { waitFor } from './support/until.js';

/**
 * The agent's reports (job output and phases, runtime state) travel up its tunnel, the one the commands
 * come down (lib/agentContract.ts, agent/reportOutbox.ts, subgraphs/sessions/reportPoller.ts): at least
 * once and in order, whatever happens to the tunnel meanwhile.
 */
describe("an agent's reports up its tunnel", () => {
  let t: TestPlatform;

  beforeAll(async () => {
    t = await startTestPlatform({ defaultCluster: true, config: { jobs: { dispatchIntervalMs: 300, localBatchJobs: true } } });
  });
  afterAll(async () => {
    await t?.close();
  });

  const rest = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${t.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${t.adminKey}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: response.status, body: (await response.json()) as any };
  };

  it("a job's output arrives whole and in order, and its end after it, though the tunnel is cut again and again while it reports", async () => {
    const agent = t.platform.agent!;
    const count = 3000;
    // Lines in bursts over ~6 s, so that reports are in flight (handed over, not yet acknowledged) when the tunnel is cut.
    const command = `i=1; while [ $i -le ${count} ]; do echo "line-$i"; if [ $((i % 150)) -eq 0 ]; then sleep 0.3; fi; i=$((i+1)); done`;
    const created = await rest('POST', '/v1/batch/jobs', { image: 'pytorch-2.1', command });
    expect(created.status).toBe(200);
    const id = created.body.id as string;
    await waitFor(
      () => rest('GET', `/v1/batch/jobs/${id}`),
      (r) => r.body.status !== 'queued',
      `batch job ${id} to start`,
    );
    // Cut every tunnel of the agent, again as soon as it is back, while the job writes.
    let lastCut = 0;
    for (let round = 0; round < 6; round++) {
      await agent.whenConnected();
      agent.dropConnections();
      lastCut = Date.now();
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const done = await waitFor(
      () => rest('GET', `/v1/batch/jobs/${id}`),
      (r) => ['succeeded', 'failed', 'cancelled'].includes(r.body.status),
      `batch job ${id} to finish`,
      30_000,
    );
    // Its end arrived after the last cut: the cuts fell while it was still reporting.
    expect(done.body.finished_at).toBeGreaterThanOrEqual(Math.floor(lastCut / 1000));
    expect(done.body.status).toBe('succeeded');
    // A job's log read once it finished holds every line the command wrote, once each, in order.
    const lines: { offset: number; text: string }[] = [];
    for (let from = 0, more = true; more;) {
      const { batchJob } = await t.gqlOk<{ batchJob: { logs: { lines: { offset: number; text: string }[]; nextOffset: number; hasMore: boolean } } }>(
        `query($id: ID!, $from: Int) { batchJob(id: $id) { logs(fromOffset: $from, limit: 1000) { lines { offset text } nextOffset hasMore } } }`,
        { id, from },
      );
      lines.push(...batchJob.logs.lines);
      ({ nextOffset: from, hasMore: more } = batchJob.logs);
    }
    // (The local executor's first line says it ignores the image.)
    expect(lines[0]?.text).toMatch(/^mariner: the local executor runs the command on this machine/);
    expect(lines.slice(1).map((line) => line.text)).toEqual(Array.from({ length: count }, (_, i) => `line-${i + 1}`));
    expect(lines.map((line) => line.offset)).toEqual(Array.from({ length: count + 1 }, (_, i) => i));
  }, 60_000);
});
