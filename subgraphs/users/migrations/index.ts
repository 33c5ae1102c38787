import type { Migration } from '../../../lib/db.js';
import { initial } from './001_initial.js';
import { namespaceClaims } from './002_namespace_claims.js';
import { bootstrapApiKey } from './003_bootstrap_api_key.js';
import { gpuQuotas } from './004_gpu_quotas.js';

/** The users subgraph's migrations, applied in order at start. */
export const migrations: Migration[] = [initial, namespaceClaims, bootstrapApiKey, gpuQuotas];
