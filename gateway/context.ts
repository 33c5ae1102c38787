import type { Identity, Worker } from '../lib/identity.js';
import type { RuleContext } from '../schema/rbac/rules.js';

/** Per-request state of the gateway. */
export interface GatewayContext extends RuleContext {
  requestId: string;
  identity: Identity | null;
  worker: Worker | null;
  system: false;
  /** Where the request came from, for the audit log (gateway/audit.ts clientAddressOf); absent over WebSocket. */
  clientAddress?: string | null;
  /** Internal tokens minted for this request, one per subgraph. */
  internalTokens: Map<string, string>;
}
