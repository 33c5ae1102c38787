import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import { silentLogger } from '../lib/logging.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { waitFor } from './support/until.js';

describe('jobs on a cluster that disappears', () => {
  let t: TestPlatform;
  const agents: Agent[] = [];

  beforeAll(async () => {
    // Clusters count as gone after 5 s without a status report (the minimum; production: 30 min).
    t = await startTestPlatform({
      config: { clusters: { statusStaleSeconds: 5 }, jobs: { dispatchIntervalMs: 200, localBatchJobs: true, rescheduleAfterSeconds: 5 } },
    });
  });
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.close()));
    await t?.close();
  });

  const register = async (name: string) => {
    const { registerCluster } = await t.gqlOk(`mutation($name: String!) { registerCluster(input: { name: $name }) { registrationKey cluster { id } } }`, {
      name,
    });
    const agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: registerCluster.registrationKey,
      executor: 'local',
      jobs: { runBatchJobs: true },
      statusIntervalMs: 500,
      logger: silentLogger(),
    });
    agents.push(agent);
    await agent.reportStatus();
    return { id: registerCluster.cluster.id as string, agent };
  };
  const job = (id: string) =>
    t.gqlOk<{ batchJob: { status: string; clusterId: string; attempts: number } }>(`query($id: ID!) { batchJob(id: $id) { status clusterId attempts } }`, {
      id,
    });

  it('is placed on another cluster of the project and runs there', { timeout: 60_000 }, async () => {
    const first = await register('first');
    const { createBatchJob } = await t.gqlOk(
      `mutation { createBatchJob(input: { image: "busybox:1.36", command: "echo started; sleep 60" }) { id clusterId } }`,
    );
    expect(createBatchJob.clusterId).toBe(first.id);
    await waitFor(
      () => job(createBatchJob.id),
      (d) => d.batchJob.status === 'RUNNING',
      'the job to run on the first cluster',
    );

    // The first cluster goes away for good (its agent stops, so do its reports); a second one comes up.
    await first.agent.close();
    const second = await register('second');
    const moved = await waitFor(
      () => job(createBatchJob.id),
      (d) => d.batchJob.clusterId === second.id && d.batchJob.status === 'RUNNING',
      'the job to run on the second cluster',
    );
    expect(moved.batchJob.attempts).toBe(2);
    const { batchJob } = await t.gqlOk(`query($id: ID!) { batchJob(id: $id) { logs { lines { text } } } }`, { id: createBatchJob.id });
    expect(batchJob.logs.lines.filter((l: { text: string }) => l.text === 'started')).toHaveLength(2);
    const { fineTuningJob } = await t.gqlOk(`query($id: ID!) { fineTuningJob(id: $id) { id } }`, { id: createBatchJob.id });
    expect(fineTuningJob).toBeNull();
    await t.gqlOk(`mutation($id: ID!) { cancelBatchJob(id: $id) { id } }`, { id: createBatchJob.id });
    await waitFor(
      () => job(createBatchJob.id),
      (d) => d.batchJob.status === 'CANCELLED',
      'the job to be cancelled',
    );
  });
});
