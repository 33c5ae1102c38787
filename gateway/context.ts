import type { Identity, Worker } from '../lib/identity.js';
import type { RuleContext } from '../schema/rbac/rules.js';

/** Per-request state of the gateway. */
export interface GatewayContext extends RuleContext {
  requestId: string;
  identity: Identity | null;
  worker: Worker | null;
  system: false;
  /** Internal tokens minted for this request, one per subgraph. */
  internalTokens: Map<string, string>;
}
