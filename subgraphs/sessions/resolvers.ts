import { projectScopeOf } from '../../lib/identity.js';
import type { SessionsContext } from './context.js';
import type { Resolvers } from './generated/resolvers.js';

/** Only the caller's tenant's tunnels, even for a reference the gateway would never send. */
function tunnelsOf(ctx: SessionsContext, clusterId: string) {
  const tenantId = projectScopeOf(ctx.identity).tenantId;
  return ctx.registry.tunnels(clusterId).filter((t) => t.tenantId === tenantId);
}

export const resolvers: Resolvers<SessionsContext> = {
  Cluster: {
    __resolveReference: (ref) => ({ id: ref.id }),
    tunnels: (c, _a, ctx) => tunnelsOf(ctx, c.id),
    connected: (c, _a, ctx) => tunnelsOf(ctx, c.id).length > 0,
  },
  AgentTunnel: {
    connectedAt: (t) => t.connectedAt.toISOString(),
    lastHeartbeatAt: (t) => t.lastHeartbeatAt.toISOString(),
  },
};
