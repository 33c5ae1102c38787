import type { Migration } from '../../../lib/db.js';
import { initial } from './001_initial.js';
import { batchJobs } from './002_batch_jobs.js';
import { notebooks } from './003_notebooks.js';
import { jobAccess } from './004_job_access.js';

/** The jobs subgraph's migrations, applied in order at start. */
export const migrations: Migration[] = [initial, batchJobs, notebooks, jobAccess];
