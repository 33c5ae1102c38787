import type { AgentReport } from '../lib/agentContract.js';
import { graphqlRequest } from '../lib/graphqlClient.js';
import type { Logger } from '../lib/logging.js';
import type { ActiveModel, RuntimeHost } from './executor.js';

const ACTIVE_MODELS =
  'query AgentActiveModels { workerActiveModels { id source formats gpu replicas extraArgs loraAdapters loadBalancing prefixHashChars scalingSchedules { cron timeZone minReplicas maxReplicas onDemand } } }';

/**
 * The activation reconciler (LLMariner inference-manager engine): the control plane's active models
 * this cluster may run are deployed, runtimes of models no longer active are removed, and the
 * runtimes' state is reported (up the tunnel: `send`, agent/reportOutbox.ts) so the control plane
 * routes requests to ready ones. Runs on a timer
 * and on demand; one pass at a time. While a runtime has fewer ready replicas than it wants (a pod
 * starting after a scale-up), its state is reported every `catchUpMs` besides, so that requests
 * waiting at the control plane for it go as soon as it is ready.
 */
export function startRuntimeReconciler(options: {
  graphqlUrl: string;
  registrationKey: string;
  /** Resolves once the control plane has the report (agent/reportOutbox.ts). */
  send(report: AgentReport): Promise<void>;
  runtimes: RuntimeHost;
  intervalMs: number;
  /** Default 2 s. */
  catchUpMs?: number;
  logger: Logger;
}) {
  const headers = { authorization: `Bearer ${options.registrationKey}` };
  const catchUpMs = options.catchUpMs ?? 2_000;
  let running: Promise<void> | undefined;
  let again = false;
  let catchUp: NodeJS.Timeout | undefined;
  let closed = false;

  /** Reports the runtimes' state; while one is short of ready replicas, again after `catchUpMs`. */
  async function report(): Promise<void> {
    const runtimes = await options.runtimes.status();
    await options.send({ kind: 'runtimes', runtimes });
    clearTimeout(catchUp);
    catchUp = undefined;
    // A runtime refused here (`failure`) will not catch up: it is reported with the others, not every `catchUpMs`.
    if (!closed && runtimes.some((runtime) => runtime.readyReplicas < runtime.desiredReplicas && !runtime.failure)) {
      catchUp = setTimeout(() => {
        if (running) return; // the pass in progress reports at its end
        report().catch((error: Error) => options.logger.debug({ err: error.message }, 'runtime report failed; retrying on the next tick'));
      }, catchUpMs);
      catchUp.unref();
    }
  }

  async function pass(): Promise<void> {
    const { workerActiveModels } = await graphqlRequest<{ workerActiveModels: ActiveModel[] }>(options.graphqlUrl, ACTIVE_MODELS, {}, headers);
    // Report "starting" first, then the outcome: a model being loaded into a runtime is visible.
    const reconciled = options.runtimes.reconcile(workerActiveModels);
    await report();
    await reconciled;
    await report();
  }

  /** Runs a pass now (or right after the one in progress). */
  function reconcileNow(): Promise<void> {
    if (running) {
      again = true;
      return running;
    }
    running = pass()
      .catch((error: Error) => options.logger.warn({ err: error.message }, 'runtime reconciliation failed; retrying on the next tick'))
      .finally(() => {
        running = undefined;
        if (again) {
          again = false;
          void reconcileNow();
        }
      });
    return running;
  }

  const timer = setInterval(() => void reconcileNow(), options.intervalMs);
  timer.unref();
  void reconcileNow();
  return {
    reconcileNow,
    async close() {
      closed = true;
      clearInterval(timer);
      clearTimeout(catchUp);
      // A report waits for a tunnel to take it; with none (the control plane is gone) the agent stops
      // anyway: runtime state is sent whole each time, so a lost last report is made good by the next agent.
      await Promise.race([running, new Promise((resolve) => setTimeout(resolve, 5_000).unref())]);
    },
  };
}
