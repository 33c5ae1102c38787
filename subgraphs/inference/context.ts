import type { Logger } from '../../lib/logging.js';
import type { PubSub } from '../../lib/pubsub.js';
import type { SubgraphContext } from '../../lib/subgraphServer.js';
import type { BudgetGuard } from './budgets.js';
import type { BudgetStore } from './budgetsStore.js';
import type { InferenceLoaders } from './loaders.js';
import type { ModelsClient } from './modelsClient.js';
import type { VectorStoreSearch } from './rag.js';
import type { RateLimiter } from './rateLimits.js';
import type { RefusedModels } from './refusedModels.js';
import type { InferenceRouter } from './router.js';
import type { RuntimeAccess } from './runtimeAccess.js';
import type { TranscriptionAudio } from './transcriptions.js';
import type { RuntimeRow, RuntimeStore, UsageStore } from './store.js';
import type { UsageRecorder } from './usage.js';

export interface InferenceContext extends SubgraphContext {
  store: RuntimeStore;
  router: InferenceRouter;
  /** Models no usable cluster can run: refused at once (refusedModels.ts). */
  refused: RefusedModels;
  models: ModelsClient;
  /** Which runtimes the caller may see, and which a cluster may report. */
  access: RuntimeAccess;
  loaders: InferenceLoaders;
  pubsub: PubSub;
  /** createTranscription's audio files (null: no files subgraph or object store in this process). */
  transcriptionAudio: TranscriptionAudio | null;
  /** The `rag` tool's search (null: no vectorstores subgraph to ask). */
  vectorStores: VectorStoreSearch | null;
  rateLimiter: RateLimiter;
  /** Token budgets per API key and project (budgets.ts). */
  budgets: BudgetGuard;
  budgetStore: BudgetStore;
  usage: UsageRecorder;
  usageStore: UsageStore;
  logger: Logger;
}

/** A Model as this subgraph knows it: by id only. */
export interface ModelRef {
  id: string;
}

export interface InferenceStatusModel {
  runtimes: RuntimeRow[];
  readyModelIds: string[];
}
