import type { Migration } from '../../../lib/db.js';
import { initial } from './001_initial.js';
import { modelLoading } from './002_model_loading.js';

/** The models subgraph's migrations, applied in order at start. */
export const migrations: Migration[] = [initial, modelLoading];
