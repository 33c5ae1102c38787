import type { Migration } from '../../../lib/db.js';
import { initial } from './001_initial.js';
import { clusterOwners } from './002_cluster_owners.js';
import { telemetry } from './003_telemetry.js';

/** The clusters subgraph's migrations, applied in order at start. */
export const migrations: Migration[] = [initial, clusterOwners, telemetry];
