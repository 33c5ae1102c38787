import { Gauge } from 'prom-client';
import { ConfigError } from '../lib/config.js';
import type { Logger } from '../lib/logging.js';
import { createComponentMetrics } from './metrics.js';
import { startOpsServer, type OpsServer } from './opsServer.js';

/**
 * `mariner agent`'s operations port, when MARINER_AGENT_OPS_PORT is set (the chart sets 9090):
 * /healthz, /readyz (ready while a tunnel to the control plane is up) and /metrics. Liveness does not
 * follow the tunnel: a control plane outage must not get every agent restarted.
 */
export async function startAgentOps(agent: { connected(): boolean }, env: Record<string, string | undefined>, logger: Logger): Promise<OpsServer | undefined> {
  const raw = env['MARINER_AGENT_OPS_PORT']?.trim();
  if (!raw) return undefined;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`MARINER_AGENT_OPS_PORT must be an integer between 0 and 65535, got "${raw}"`);
  const metrics = createComponentMetrics('agent');
  new Gauge({
    name: 'mariner_agent_tunnel_connected',
    help: '1 while at least one tunnel to the control plane is up',
    registers: [metrics.registry],
    collect() {
      this.set(agent.connected() ? 1 : 0);
    },
  });
  return startOpsServer({
    host: env['MARINER_HOST']?.trim() || '0.0.0.0',
    port,
    readiness: async () => (agent.connected() ? { ready: true, status: 'connected' } : { ready: false, status: 'connecting to the control plane' }),
    registry: metrics.registry,
    logger,
  });
}
