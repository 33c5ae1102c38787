import type { ClientHttp2Session } from 'node:http2';
import { agentRoutes, callAgent, type AgentReport, type AgentReportBatch, type AgentReportResult } from '../../lib/agentContract.js';
import { ErrorCode, MarinerError } from '../../lib/errors.js';
import type { Worker } from '../../lib/identity.js';
import { asWorker, createInternalClient, type InternalClient } from '../../lib/internalClient.js';
import type { InternalTokens } from '../../lib/identity.js';
import type { Logger } from '../../lib/logging.js';
import { SessionsRuntimesDocument, type SessionsRuntimesMutationVariables } from './generated/inferenceOperations.js';
import { SessionsJobLogsDocument, SessionsJobStatusDocument } from './generated/jobsOperations.js';

/** Delivers one report of a cluster's agent to the component that owns it, as that agent's worker. */
export type ReportDelivery = (worker: Worker, report: AgentReport, requestId: string) => Promise<void>;

/**
 * Delivery to the jobs and inference subgraphs (lib/internalClient.ts, as the tunnel's worker: the same
 * identity and the same checks as the worker mutations had through the gateway), wherever they run:
 * this process (`mariner up`) or their own (`mariner serve jobs`, `inference`: MARINER_SUBGRAPH_<NAME>_URL).
 * A subgraph that is not there (yet) fails the report with UNAVAILABLE: the agent sends it again.
 */
export function subgraphDelivery(options: { tokens: InternalTokens; jobsUrl?: () => string; inferenceUrl?: () => string }): ReportDelivery {
  const client = (subgraph: string, url?: () => string): InternalClient | undefined =>
    url ? createInternalClient({ subgraph, url, tokens: options.tokens, timeoutMs: 30_000 }) : undefined;
  const jobs = client('jobs', options.jobsUrl);
  const inference = client('inference', options.inferenceUrl);
  const absent = (name: string) => new MarinerError(ErrorCode.UNAVAILABLE, `the ${name} component is not reachable from the sessions component`);
  return async (worker, report, requestId) => {
    const as = asWorker(requestId, worker);
    switch (report.kind) {
      case 'jobLogs':
        if (!jobs) throw absent('jobs');
        await jobs.request(as, SessionsJobLogsDocument, { jobId: report.jobId, lines: report.lines });
        return;
      case 'jobStatus': {
        if (!jobs) throw absent('jobs');
        const { kind: _kind, ...input } = report;
        await jobs.request(as, SessionsJobStatusDocument, { input });
        return;
      }
      case 'runtimes':
        if (!inference) throw absent('inference');
        // The wire shape is the mutation's input (lib/agentContract.ts); the subgraph validates it.
        await inference.request(as, SessionsRuntimesDocument, { runtimes: report.runtimes as SessionsRuntimesMutationVariables['runtimes'] });
        return;
      default:
        throw new MarinerError(ErrorCode.BAD_USER_INPUT, `unknown report kind ${JSON.stringify((report as { kind?: unknown }).kind)?.slice(0, 50)}`);
    }
  };
}

/** What a report's key is: its reports are delivered in order; those of different keys side by side. */
const keyOf = (report: AgentReport): string => (report.kind === 'runtimes' ? 'runtimes' : `job:${String(report.jobId)}`);

/**
 * The control plane's end of the reports channel (lib/agentContract.ts `AgentReport`) on one tunnel: a
 * long poll kept open on its HTTP/2 session, asked again as soon as it is answered. Each report is
 * delivered (`deliver`) as it comes, those of one job (one key) one after the other, others side by
 * side, so a slow one (a fine-tuned model being registered) holds up no other job; each outcome goes to
 * the agent as soon as it is known (`agentRoutes.reportResults()`, coalesced while one is on its way).
 * Ends with the session. A poll that fails is tried again after a second; outcomes that could not be
 * sent are lost, and the agent sends those reports again (at least once).
 */
export function pollReports(options: {
  session: ClientHttp2Session;
  worker: () => Worker;
  agentId: string;
  deliver: ReportDelivery;
  logger: Logger;
}): Promise<void> {
  const { session, logger } = options;
  const onSession = {
    request: (_clusterId: string, headers: Parameters<ClientHttp2Session['request']>[0], o?: { endStream?: boolean }) => session.request(headers, o),
  };
  const alive = () => !session.closed && !session.destroyed;
  const clusterId = () => options.worker().clusterId;

  let outcomes: AgentReportResult[] = [];
  let sending = false;
  const sendOutcomes = (): void => {
    if (sending || outcomes.length === 0 || !alive()) return;
    sending = true;
    const results = outcomes;
    outcomes = [];
    callAgent(onSession, clusterId(), agentRoutes.reportResults(), { results }, { timeoutMs: 15_000 })
      .then(
        (answer) => {
          if (answer.status !== 200) logger.debug({ status: answer.status }, 'the agent refused report outcomes; it sends those reports again');
        },
        (error: Error) => logger.debug({ err: error.message }, 'report outcomes not sent; the agent sends those reports again'),
      )
      .finally(() => {
        sending = false;
        sendOutcomes();
      });
  };

  /** Per key, the delivery in progress and whether the last one failed (the next ones then fail too, to keep the order). */
  const lanes = new Map<string, { tail: Promise<void>; failed?: AgentReportResult['error'] }>();
  let sequence = 0;
  const enqueue = ({ id, ...report }: AgentReportBatch['reports'][number]): void => {
    const key = keyOf(report as AgentReport);
    const lane = lanes.get(key) ?? { tail: Promise.resolve() };
    lanes.set(key, lane);
    const requestId = `${options.agentId}:report:${++sequence}`;
    const tail = lane.tail.then(async () => {
      if (lane.failed) {
        outcomes.push({ id, error: { code: ErrorCode.UNAVAILABLE, message: `an earlier report of the same job was not delivered: ${lane.failed.message}` } });
      } else {
        try {
          await options.deliver(options.worker(), report as AgentReport, requestId);
          outcomes.push({ id });
        } catch (error) {
          const code = error instanceof MarinerError ? error.code : ErrorCode.UNAVAILABLE;
          if (code !== ErrorCode.NOT_FOUND) logger.warn({ err: (error as Error).message, kind: report.kind, code }, 'an agent report was not delivered');
          lane.failed = { code, message: (error as Error).message };
          outcomes.push({ id, error: lane.failed });
        }
      }
      sendOutcomes();
    });
    lane.tail = tail;
    // An idle lane is forgotten (and its failure with it: the agent sends that report again first).
    void tail.then(() => {
      if (lane.tail === tail) lanes.delete(key);
    });
  };

  return (async () => {
    while (alive()) {
      try {
        const answer = await callAgent(onSession, clusterId(), agentRoutes.reports(), {}, { timeoutMs: 60_000 });
        if (answer.status === 404) {
          logger.warn('the agent serves no reports channel (an older agent): its reports cannot arrive');
          return;
        }
        if (answer.status !== 200) throw new Error(`the agent answered ${answer.status} to a report poll`);
        const { reports } = answer.body as unknown as AgentReportBatch;
        if (!Array.isArray(reports)) throw new Error('the answer to a report poll has no reports list');
        for (const report of reports) enqueue(report);
      } catch (error) {
        if (!alive()) return;
        logger.debug({ err: (error as Error).message }, 'report poll failed; polling again shortly');
        await new Promise((resolve) => setTimeout(resolve, 1_000).unref());
      }
    }
  })();
}
