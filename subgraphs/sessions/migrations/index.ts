import type { Migration } from '../../../lib/db.js';
import { initial } from './001_initial.js';
import { federatedJobs } from './002_federated_jobs.js';
import { loginTicketsUsed } from './003_login_tickets_used.js';

/** The sessions component's migrations (its tunnel directory, the federated Jobs, the used notebook sign-in tickets), applied in order at start. */
export const migrations: Migration[] = [initial, federatedJobs, loginTicketsUsed];
