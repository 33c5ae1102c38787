import type { Migration } from '../../../lib/db.js';
import { initial } from './001_initial.js';

/** The batches subgraph's migrations, applied in order at start. */
export const migrations: Migration[] = [initial];
