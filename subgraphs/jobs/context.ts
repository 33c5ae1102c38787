import type { PubSub } from '../../lib/pubsub.js';
import type { SubgraphContext } from '../../lib/subgraphServer.js';
import type { CreatorCredentials } from './creatorCredentials.js';
import type { AgentTunnels } from '../../lib/agentContract.js';
import type { JobDispatcher } from './dispatcher.js';
import type { JobEvents } from './events.js';
import type { SecretBox } from './secrets.js';
import type { JobDependencies } from './dependencies.js';
import type { CheckpointRow, JobRow, JobStore, LogRow } from './store.js';

export interface JobsContext extends SubgraphContext {
  store: JobStore;
  dependencies: JobDependencies;
  events: JobEvents;
  dispatcher: JobDispatcher;
  transport: AgentTunnels;
  pubsub: PubSub;
  /** Whether a job still acts for its creator (the API key that created it exists). */
  credentials: CreatorCredentials;
  /** Batch job image presets: name → image (LLMariner Helm `batchJob.images`). */
  batchImages: Record<string, string>;
  /** Notebook image presets: name → image (LLMariner `notebook.imageTypes`). */
  notebookImages: Record<string, string>;
  /** Seals the secrets kept for later (a notebook's token and API key). */
  secrets: SecretBox;
}

/** A reference to an entity another subgraph owns (Model, Cluster). */
export interface EntityRef {
  id: string;
}

/** One event of `jobLogs`. */
export interface LogChunkModel {
  jobId: string;
  job: JobRow;
  lines: LogRow[];
  nextOffset: number;
}

/** A checkpoint with the name of the model it would be (its job's fine-tuned model). */
export interface CheckpointModel extends CheckpointRow {
  modelName: string;
}
