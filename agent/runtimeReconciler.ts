import { graphqlRequest } from '../lib/graphqlClient.js';
import type { Logger } from '../lib/logging.js';
import type { ActiveModel, RuntimeHost } from './executor.js';

const ACTIVE_MODELS = 'query AgentActiveModels { workerActiveModels { id source formats gpu replicas extraArgs } }';
const REPORT_RUNTIMES = `mutation AgentRuntimes($runtimes: [RuntimeReportInput!]!) { reportRuntimes(runtimes: $runtimes) { modelId } }`;

/**
 * The activation reconciler (LLMariner inference-manager engine): the control plane's active models
 * this cluster may run are deployed, runtimes of models no longer active are removed, and the
 * runtimes' state is reported so the control plane routes requests to ready ones. Runs on a timer
 * and on demand; one pass at a time.
 */
export function startRuntimeReconciler(options: {
  graphqlUrl: string;
  registrationKey: string;
  runtimes: RuntimeHost;
  intervalMs: number;
  logger: Logger;
}) {
  const headers = { authorization: `Bearer ${options.registrationKey}` };
  let running: Promise<void> | undefined;
  let again = false;

  async function pass(): Promise<void> {
    const { workerActiveModels } = await graphqlRequest<{ workerActiveModels: ActiveModel[] }>(options.graphqlUrl, ACTIVE_MODELS, {}, headers);
    // Report "starting" first, then the outcome: a model being loaded into a runtime is visible.
    const report = async () => graphqlRequest(options.graphqlUrl, REPORT_RUNTIMES, { runtimes: await options.runtimes.status() }, headers);
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
      clearInterval(timer);
      await running;
    },
  };
}
