import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { agentRoutes, callAgent, parseAgentRoute, type AgentReportBatch } from '../lib/agentContract.js';
import { ErrorCode, MarinerError } from '../lib/errors.js';
import { until } from '../test/support/until.js';
import { ReportOutbox } from './reportOutbox.js';

/** The agent's HTTP/2 server with the outbox on the reports route, and a control-plane session to it. */
async function channel(outbox: ReportOutbox) {
  const server = http2.createServer((req, res) => {
    const route = parseAgentRoute(req.url);
    void (route?.kind === 'reportResults' ? outbox.handleResults(req, res) : outbox.handlePoll(req, res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const connect = () => {
    const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    session.on('error', () => undefined);
    return session;
  };
  let session = connect();
  const tunnels = { request: (_cluster: string, headers: http2.OutgoingHttpHeaders, options?: { endStream?: boolean }) => session.request(headers, options) };
  return {
    /** The outcomes of reports handed over (as the control plane sends them), then a poll. */
    poll: async (results: { id: number; error?: { code: string; message: string } }[] = []) => {
      if (results.length > 0) expect((await callAgent(tunnels, 'cluster-1', agentRoutes.reportResults(), { results })).status).toBe(200);
      const answer = await callAgent(tunnels, 'cluster-1', agentRoutes.reports(), {}, { timeoutMs: 5_000 });
      return { status: answer.status, reports: (answer.body as unknown as AgentReportBatch).reports };
    },
    /** Cuts the connection and opens another (a tunnel that went away and came back). */
    reconnect: () => {
      session.destroy();
      session = connect();
    },
    close: () => {
      session.destroy();
      server.close();
    },
  };
}

describe('the report outbox (the agent end of the reports channel)', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => cleanups.splice(0).forEach((cleanup) => cleanup()));

  it('a report is done when the control plane says it was delivered; a refusal rejects it with its code', async () => {
    const outbox = new ReportOutbox({ holdMs: 200 });
    const c = await channel(outbox);
    cleanups.push(c.close);
    let delivered = false;
    const sent = outbox
      .send({ kind: 'jobLogs', jobId: 'job-1', lines: [{ offset: 0, text: 'hello', time: '2026-01-01T00:00:00Z' }] })
      .then(() => (delivered = true));
    const refused = outbox.send({ kind: 'jobStatus', jobId: 'job-gone', phase: 'RUNNING' }).catch((e: unknown) => e);
    const first = await c.poll();
    expect(first.reports.map((r) => [r.kind, 'jobId' in r ? r.jobId : null])).toEqual([
      ['jobLogs', 'job-1'],
      ['jobStatus', 'job-gone'],
    ]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(delivered).toBe(false); // handed over is not delivered
    // An empty poll (nothing queued) is held, then answered empty.
    const second = await c.poll([{ id: first.reports[0]!.id }, { id: first.reports[1]!.id, error: { code: 'NOT_FOUND', message: 'no job job-gone' } }]);
    expect(second.reports).toEqual([]);
    await sent;
    expect(delivered).toBe(true);
    const error = await refused;
    expect(error).toBeInstanceOf(MarinerError);
    expect((error as MarinerError).code).toBe(ErrorCode.NOT_FOUND);
  });

  it('a report handed over on a tunnel that goes away is failed, so its sender sends it again', async () => {
    const outbox = new ReportOutbox({ holdMs: 200 });
    const c = await channel(outbox);
    cleanups.push(c.close);
    const sent = outbox.send({ kind: 'runtimes', runtimes: [] }).catch((e: unknown) => e);
    expect((await c.poll()).reports).toHaveLength(1);
    c.reconnect();
    expect(String(await sent)).toMatch(/went away/);
    // Sent again, it goes on the new connection.
    const again = outbox.send({ kind: 'runtimes', runtimes: [] });
    const { reports } = await c.poll();
    expect(reports).toHaveLength(1);
    await c.poll([{ id: reports[0]!.id }]);
    await again;
  });

  it('a parked poll wakes when a report is queued; closing answers it, and later polls get 503', async () => {
    const outbox = new ReportOutbox({ holdMs: 10_000 });
    const c = await channel(outbox);
    cleanups.push(c.close);
    const started = Date.now();
    const parked = c.poll();
    setTimeout(() => void outbox.send({ kind: 'runtimes', runtimes: [] }).catch(() => undefined), 100);
    expect((await parked).reports).toHaveLength(1);
    expect(Date.now() - started).toBeLessThan(2_000);
    const held = c.poll();
    await until(() => outbox.waitingPolls === 1, 'the poll to be parked');
    outbox.close();
    expect((await held).reports).toEqual([]);
    expect((await c.poll()).status).toBe(503);
    await expect(outbox.send({ kind: 'runtimes', runtimes: [] })).rejects.toThrow(/stopping/);
  });
});
