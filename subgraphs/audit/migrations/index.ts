import type { Migration } from '../../../lib/db.js';
import { initial } from './001_initial.js';

/** The audit subgraph's migrations, applied in order at start. */
export const migrations: Migration[] = [initial];
