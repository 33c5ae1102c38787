import { assertId } from '../../lib/ids.js';
import { latestOnChange } from '../../lib/latestOnChange.js';
import { projectScopeOf } from '../../lib/identity.js';
import type { SessionsContext } from './context.js';
import type { Resolvers } from './generated/resolvers.js';

/** Only the caller's tenant's tunnels, even for a reference the gateway would never send. */
function tunnelsOf(ctx: SessionsContext, clusterId: string) {
  const tenantId = projectScopeOf(ctx.identity).tenantId;
  return ctx.registry.tunnels(clusterId).filter((t) => t.tenantId === tenantId);
}

/** The cluster's tunnel state now, then after each change. */
function tunnelEvents(ctx: SessionsContext, clusterId: string) {
  return latestOnChange(
    (changed) => ctx.registry.onChange((id) => id === clusterId && changed()),
    () => {
      const tunnels = tunnelsOf(ctx, clusterId);
      return { clusterTunnels: { cluster: { id: clusterId }, connected: tunnels.length > 0, tunnels } };
    },
  );
}

export const resolvers: Resolvers<SessionsContext> = {
  Subscription: {
    clusterTunnels: {
      subscribe: (_p, { clusterId }, ctx) => tunnelEvents(ctx, assertId('cluster', clusterId, 'clusterId')),
    },
  },
  Cluster: {
    __resolveReference: (ref) => ({ id: ref.id }),
    tunnels: (c, _a, ctx) => tunnelsOf(ctx, c.id),
    // Connected to any replica (tunnels lists this replica's only).
    connected: (c, _a, ctx) => ctx.transport.connectedClusters(projectScopeOf(ctx.identity).tenantId).includes(c.id),
  },
  AgentTunnel: {
    connectedAt: (t) => t.connectedAt.toISOString(),
    lastHeartbeatAt: (t) => t.lastHeartbeatAt.toISOString(),
  },
};
