import { createClient, type Client } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startTestPlatform, type TestPlatform } from './support/platform.js';

/**
 * Issue 24 item 8: the last `jobLogs` event a follower gets before the subscription completes carries
 * the job's final state (it showed RUNNING: the lines were sent while the job ran, and the end of the job
 * brought no line). Through a real graphql-ws client against the gateway, with a batch job on the local
 * executor.
 */
interface LogEvent {
  lines: { offset: number; text: string }[];
  job: { id: string; status: string };
}

const JOB_LOGS = `subscription($id: ID!, $from: Int) { jobLogs(jobId: $id, fromOffset: $from) { lines { offset text } job { id status } } }`;

describe('jobLogs ends on the final state', () => {
  let t: TestPlatform;
  let ws: Client;

  beforeAll(async () => {
    t = await startTestPlatform({ defaultCluster: true, config: { jobs: { dispatchIntervalMs: 300, localBatchJobs: true } } });
    ws = createClient({
      url: t.graphqlUrl.replace('http://', 'ws://'),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      connectionParams: { authorization: `Bearer ${t.adminKey}` },
    });
  }, 120_000);
  afterAll(async () => {
    await ws?.dispose();
    await t?.close();
  });

  /** Every event until the subscription completes. */
  const follow = (id: string, from?: number) =>
    new Promise<LogEvent[]>((resolve, reject) => {
      const events: LogEvent[] = [];
      ws.subscribe<{ jobLogs: LogEvent }>(
        { query: JOB_LOGS, variables: { id, ...(from === undefined ? {} : { from }) } },
        {
          next: (r) => (r.errors ? reject(new Error(JSON.stringify(r.errors))) : events.push(r.data!.jobLogs)),
          error: reject,
          complete: () => resolve(events),
        },
      );
    });

  /** The command's own output (the local executor's note about the image left out). */
  const output = (events: LogEvent[]) => events.flatMap((e) => e.lines.map((l) => l.text)).filter((text) => !text.startsWith('mariner:'));

  const createJob = async (command: string) => {
    const response = await fetch(`${t.url}/v1/batch/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ image: 'pytorch-2.1', command }),
    });
    expect(response.status).toBe(200);
    return ((await response.json()) as { id: string }).id;
  };

  it('a job whose output ends before it does: the last event says SUCCEEDED', async () => {
    // The output comes, then the job goes on a moment without any: its end brings no new line.
    const id = await createJob('echo first; echo second; sleep 1');
    const events = await follow(id);
    expect(output(events)).toEqual(['first', 'second']);
    expect(events.at(-1)!.job.status).toBe('SUCCEEDED');
    expect(events.slice(0, -1).every((e) => e.lines.length > 0)).toBe(true);

    // Following it again once it has ended: its lines with the final state, and nothing more.
    const again = await follow(id);
    expect(again.map((e) => e.job.status)).toEqual(again.map(() => 'SUCCEEDED'));
    expect(output(again)).toEqual(['first', 'second']);
    // From past its end: one event, no lines, the final state.
    const end = again.at(-1)!.lines.at(-1)!.offset + 1;
    expect(await follow(id, end)).toEqual([{ lines: [], job: { id, status: 'SUCCEEDED' } }]);
  }, 60_000);

  it('a job that fails without output: one event carrying FAILED', async () => {
    const id = await createJob('exit 3');
    const events = await follow(id);
    expect(events.at(-1)).toMatchObject({ lines: [], job: { id, status: 'FAILED' } });
  }, 60_000);
});
