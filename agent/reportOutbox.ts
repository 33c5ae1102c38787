import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse, Http2Session } from 'node:http2';
import { REPORT_BATCH_MAX, REPORT_POLL_HOLD_MS, type AgentReport, type AgentReportBatch, type AgentReportResults } from '../lib/agentContract.js';
import { ErrorCode, MarinerError } from '../lib/errors.js';
import { readBody } from '../lib/http.js';

/** A report waiting to be handed over, or handed over on `session` and waiting for its outcome. */
interface Pending {
  id: number;
  report: AgentReport;
  resolve(): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
  session?: Http2Session;
}

/** Error codes a report's outcome may carry (anything else reads as INTERNAL: retried). */
const CODES = new Set<string>(Object.values(ErrorCode));

/**
 * The agent's side of the reports channel (lib/agentContract.ts `AgentReport`): reports wait here until
 * the control plane's poll over a tunnel takes them (`handlePoll`), and `send` resolves when the control
 * plane says they were delivered (`handleResults`), or rejects with its refusal (a MarinerError with its
 * code), or when the tunnel that carried them went away or no outcome came within `timeoutMs`: the
 * sender sends again.
 */
export class ReportOutbox {
  private nextId = 1;
  private readonly queued: Pending[] = [];
  private readonly handedOver = new Map<number, Pending>();
  /** Polls parked until a report is queued: each wakes to answer. */
  private readonly parked = new Set<() => void>();
  private readonly watched = new WeakSet<Http2Session>();
  private closed = false;

  constructor(private readonly options: { timeoutMs?: number; holdMs?: number } = {}) {}

  /** Queues a report; resolves once the control plane has it. */
  send(report: AgentReport): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the agent is stopping: reports are no longer sent'));
    return new Promise<void>((resolve, reject) => {
      const pending: Pending = {
        id: this.nextId++,
        report,
        resolve,
        reject,
        timer: setTimeout(
          () => this.settle(pending, new Error('no control plane took the report in time (no tunnel, or it went away)')),
          this.options.timeoutMs ?? 30_000,
        ),
      };
      pending.timer.unref();
      this.queued.push(pending);
      for (const wake of this.parked) wake();
    });
  }

  private settle(pending: Pending, error?: Error): void {
    clearTimeout(pending.timer);
    const index = this.queued.indexOf(pending);
    if (index !== -1) this.queued.splice(index, 1);
    this.handedOver.delete(pending.id);
    if (error) pending.reject(error);
    else pending.resolve();
  }

  /** `agentRoutes.reportResults()`: what became of reports handed over; answered at once. */
  async handleResults(req: Http2ServerRequest, res: Http2ServerResponse): Promise<void> {
    let body: AgentReportResults;
    try {
      // An HTTP/2 request reads like an HTTP/1 one: its headers, then its body.
      body = JSON.parse(await readBody(req as unknown as IncomingMessage, 1024 * 1024)) as AgentReportResults;
      if (!Array.isArray(body?.results)) throw new Error('results must be a list');
    } catch (error) {
      return answer(res, 400, { error: { message: `report results are {"results":[{"id":1}, ...]}: ${(error as Error).message}` } });
    }
    let settled = 0;
    for (const result of body.results) {
      const pending = this.handedOver.get(result?.id);
      if (!pending) continue;
      const code = result.error && CODES.has(result.error.code) ? (result.error.code as ErrorCode) : ErrorCode.INTERNAL;
      this.settle(pending, result.error ? new MarinerError(code, String(result.error.message)) : undefined);
      settled++;
    }
    answer(res, 200, { settled });
  }

  /** `agentRoutes.reports()`: answers with what is queued, waiting for a report when none is. */
  async handlePoll(req: Http2ServerRequest, res: Http2ServerResponse): Promise<void> {
    // Reports handed over on a tunnel that goes away may not have arrived: their senders send them again.
    const session = req.stream.session;
    if (session && !this.watched.has(session)) {
      this.watched.add(session);
      session.once('close', () => {
        for (const pending of [...this.handedOver.values()]) {
          if (pending.session === session) this.settle(pending, new Error('the tunnel that carried the report went away'));
        }
      });
    }
    req.resume();
    // Stopping with nothing left: the control plane waits before asking again (no empty answers in a loop).
    if (this.closed && this.queued.length === 0) return answer(res, 503, { error: { message: 'the agent is stopping' } });
    if (this.queued.length === 0) await this.park(req);
    if (res.stream.destroyed || res.stream.closed) return;
    const taken = this.queued.splice(0, REPORT_BATCH_MAX);
    for (const pending of taken) {
      pending.session = session;
      this.handedOver.set(pending.id, pending);
    }
    const batch: AgentReportBatch = { reports: taken.map((pending) => ({ ...pending.report, id: pending.id })) };
    answer(res, 200, batch);
  }

  /** Waits for a report, the hold time, the poll's end, or close. */
  private park(req: Http2ServerRequest): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.parked.delete(wake);
        req.stream.off('close', wake);
        resolve();
      };
      const timer = setTimeout(wake, this.options.holdMs ?? REPORT_POLL_HOLD_MS);
      this.parked.add(wake);
      req.stream.once('close', wake);
    });
  }

  /** How many polls are parked, waiting for a report. */
  get waitingPolls(): number {
    return this.parked.size;
  }

  /** Answers the parked polls (so the tunnels can close at once) and refuses new reports; those handed over still settle. */
  close(): void {
    this.closed = true;
    for (const wake of this.parked) wake();
  }
}

function answer(res: Http2ServerResponse, status: number, body: unknown): void {
  if (res.stream.destroyed || res.stream.closed) return;
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}
