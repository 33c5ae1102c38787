import { parseArgs } from 'node:util';
import pg from 'pg';
import { ConfigError, loadConfig, type MarinerConfig } from '../lib/config.js';
import { migrate, openDatabase, type Database } from '../lib/db.js';
import { InternalTokens } from '../lib/identity.js';
import { createLogger, type Logger } from '../lib/logging.js';
import type { SubgraphName } from '../schema/subgraphs.js';
import { clustersComponent } from '../subgraphs/clusters/index.js';
import { DEFAULT_TENANT_ID } from '../subgraphs/users/index.js';
import { ComponentHost } from './componentHost.js';
import { COMPONENTS, SERVED, servedPorts } from './components.js';
import { urlHost } from './httpServers.js';
import { createComponentMetrics, type ComponentMetrics } from './metrics.js';
import { startOpsServer } from './opsServer.js';
import { COMPONENT_NAMES, isComponentName, loadServeConfig, usesDatabase, type ServeSettings } from './serveConfig.js';

/**
 * `mariner serve <component>`: one component per process, as the Helm chart deploys them (DESIGN §5,
 * production). The operations port answers from the first moment: /healthz (alive), /readyz (ready:
 * database reachable and migrations done; the gateway: supergraph loaded), /metrics (Prometheus).
 */

export interface RunningComponent {
  /** The traffic port's base URL: the subgraph's (`/graphql`), or the public one (gateway, sessions). */
  url: string;
  /** Where each subgraph served by this process listens (its GraphQL URL). */
  subgraphUrls: Partial<Record<SubgraphName, string>>;
  /** Base URL of /healthz, /readyz and /metrics. */
  opsUrl: string;
  /** Resolves when the component is ready for traffic the first time; rejects when it cannot start. */
  started: Promise<void>;
  metrics: ComponentMetrics;
  /**
   * Stops gracefully: /readyz says `stopping` at once; after MARINER_SHUTDOWN_DELAY_MS the ports stop
   * accepting connections, requests in flight get up to MARINER_DRAIN_TIMEOUT_MS to finish, then
   * tunnels, subscriptions and the database are closed.
   */
  close(): Promise<void>;
}

/** What /readyz says while the component is not ready yet: waiting for the database, then what the host does. */
type Phase = string;

const READINESS_QUERY_TIMEOUT_MS = 2_000;

/**
 * Starts one component (bin/components.ts). Returns as
 * soon as the operations port listens; the rest (database, migrations, subgraphs) continues behind
 * `started`, so a probe sees "not ready" rather than a refused connection.
 */
export async function startComponent(config: MarinerConfig, serve: ServeSettings, logger: Logger): Promise<RunningComponent> {
  const log = logger.child({ component: serve.component });
  const metrics = createComponentMetrics(serve.component);
  let phase: Phase = serve.usesDatabase ? 'waiting for the database' : 'starting';
  let db: Database | undefined;
  let host: ComponentHost | undefined;
  metrics.observeInFlight(() => host?.inFlight() ?? 0);
  const subgraphUrls: Partial<Record<SubgraphName, string>> = {};
  let url = '';

  const readiness = async (): Promise<{ ready: boolean; status: string }> => {
    if (phase !== 'ready') return { ready: false, status: phase };
    if (!db) return { ready: true, status: 'ready' };
    const probe = db.knex.raw('select 1');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('timed out')), READINESS_QUERY_TIMEOUT_MS);
    });
    try {
      await Promise.race([probe, timeout]);
      return { ready: true, status: 'ready' };
    } catch {
      probe.catch(() => undefined);
      return { ready: false, status: 'database unreachable' };
    } finally {
      clearTimeout(timer);
    }
  };

  const ops = await startOpsServer({ host: config.host, port: serve.opsPort, readiness, registry: metrics.registry, logger: log });

  let stopping = false;
  let closing: Promise<void> | undefined;
  const boot = async () => {
    const tokens = new InternalTokens(config.internalTokenSecret!, config.internalTokenTtlSeconds);
    if (serve.usesDatabase) db = await openWhenReachable(config.databaseUrl!, config.dataDir, config.databasePoolSize, log, () => stopping);
    // The public port (gateway, sessions) on MARINER_PORT, the subgraphs on the next ports.
    const ports = servedPorts(serve.components, config.port);
    host = new ComponentHost({
      config,
      components: serve.components,
      db,
      tokens,
      secretKey: config.internalTokenSecret!,
      logger: log,
      observers: metrics,
      embedded: false,
      subgraphHost: config.host,
      subgraphPort: (subgraph) => ports.subgraphs[subgraph] ?? 0,
      externalSubgraphUrls: serve.subgraphUrls,
      externalGatewayUrl: serve.gatewayUrl,
      onStatus: (status) => (phase = status),
    });
    await host.start();
    if (config.clusters.defaultClusterKey && serve.components.includes(clustersComponent)) {
      await seedDefaultCluster(host, config, log);
    }
    Object.assign(subgraphUrls, host.subgraphUrls);
    if (ports.public !== undefined) url = `http://${urlHost(config.host, await host.listenPublic(config.host, ports.public))}`;
    if (!url) url = (Object.values(subgraphUrls)[0] ?? '').replace(/\/graphql$/, '');
    phase = 'ready';
    log.info({ url, subgraphs: subgraphUrls }, 'component ready');
  };

  const started = boot();
  // A failed start is reported through `started`; this keeps it from being an unhandled rejection first.
  started.catch(() => undefined);
  return {
    get url() {
      return url;
    },
    subgraphUrls,
    opsUrl: ops.url,
    started,
    metrics,
    close() {
      closing ??= (async () => {
        stopping = true;
        phase = 'stopping';
        await started.catch(() => undefined);
        // Kubernetes removes a terminating pod from its Services while it already got SIGTERM: keep
        // serving a moment, so requests routed meanwhile are answered rather than refused.
        if (serve.shutdownDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, serve.shutdownDelayMs));
        if (host) {
          if (!(await host.drain(serve.drainTimeoutMs, { subgraphs: true })))
            log.warn({ drainTimeoutMs: serve.drainTimeoutMs }, 'requests still in flight at the drain limit are cut');
          // Components stop in reverse start order, then the servers and what they shared close.
          await host.close();
        }
        await db?.close().catch((error: unknown) => log.warn({ err: error }, 'stop failed'));
        await ops.close();
      })();
      return closing;
    },
  };
}

/**
 * The default cluster of a chart install (LLMariner's defaultCluster): registered, or re-keyed, with the
 * registration key the chart generated into a Secret that the agent reads too, so the agent of the same
 * release connects without anyone calling registerCluster. Every replica does it at each start; the
 * store's advisory lock and the key's hash make it idempotent.
 */
async function seedDefaultCluster(host: ComponentHost, config: MarinerConfig, logger: Logger): Promise<void> {
  const { store } = host.exposed(clustersComponent);
  const { clusterId } = await store.ensureDefaultCluster(DEFAULT_TENANT_ID, config.clusters.defaultClusterName, config.clusters.defaultClusterKey, {
    adopt: true,
  });
  logger.info({ clusterId, name: config.clusters.defaultClusterName }, 'default cluster registered with MARINER_DEFAULT_CLUSTER_KEY');
}

/**
 * `mariner serve --migrate-only`: every component's migrations, then exit (the chart's pre-install and
 * pre-upgrade hook Job). Needs DATABASE_URL only. The components still migrate at start, which then finds
 * nothing to do; a migration must therefore work with the previous release's code still serving
 * (docs/helm.md: add columns and tables, never rename or drop in the release that stops using them).
 */
export async function migrateOnly(config: MarinerConfig, logger: Logger): Promise<void> {
  if (!config.databaseUrl) throw new ConfigError('DATABASE_URL is required for mariner serve --migrate-only');
  const db = await openWhenReachable(config.databaseUrl, config.dataDir, 1, logger, () => false);
  try {
    for (const component of COMPONENTS) {
      if (!component.migrations) continue;
      await migrate(db.knex, component.migrations.schema, [...component.migrations.migrations]);
      logger.info({ component: component.name, schema: component.migrations.schema }, 'migrations applied');
    }
  } finally {
    await db.close();
  }
}

/**
 * Opens the database once it answers: a pod may start before PostgreSQL does. Each try is a single
 * connection (not a pool) so failures leave nothing behind; /readyz says what it waits for meanwhile.
 */
async function openWhenReachable(databaseUrl: string, dataDir: string, poolSize: number, logger: Logger, stopping: () => boolean): Promise<Database> {
  for (let attempt = 0; ; attempt++) {
    const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5_000 });
    try {
      await client.connect();
      await client.end();
      return await openDatabase({ databaseUrl, dataDir, poolSize });
    } catch (error) {
      await client.end().catch(() => undefined);
      if (stopping()) throw new Error('stopped while waiting for the database');
      const retryInMs = Math.min(5_000, 200 * 2 ** attempt);
      // The message only (pg's errors name host and database, never the password).
      logger.warn({ error: (error as Error).message, retryInMs }, 'database not reachable yet');
      await new Promise((resolve) => setTimeout(resolve, retryInMs).unref());
      if (stopping()) throw new Error('stopped while waiting for the database');
    }
  }
}

/** How `mariner serve` runs the registry's components, as its usage says it. */
const layout = COMPONENT_NAMES.map((name) => {
  const components = SERVED.get(name)!;
  const ports = servedPorts(components, 8080);
  return {
    name,
    subgraphPorts: ports.public === undefined ? [] : Object.entries(ports.subgraphs).map(([subgraph, port]) => `${subgraph} ${port}`),
    database: usesDatabase(components),
    gatewayUrl: components.some((c) => c.needs.gateway) && !components.some((c) => c.provides?.includes('gateway')),
  };
});
const names = (list: string[]) => list.join(' and ');

export const SERVE_USAGE = `  serve     run one component, as the Helm chart does: mariner serve <component>
              components: ${COMPONENT_NAMES.join(', ')}
              (the agents' tunnels end in sessions: set its MARINER_SESSIONS_PEER_PORT, where inference and
              jobs, and its other replicas, send requests for the clusters whose tunnels end in it)
            settings: the environment, or a JSON file of the same names in MARINER_CONFIG_FILE
            (the environment wins); required: MARINER_INTERNAL_TOKEN_SECRET (shared by all),
            DATABASE_URL (all but ${names(layout.filter((p) => !p.database).map((p) => p.name))}), MARINER_SUBGRAPH_<NAME>_URL for the subgraphs
            a component calls (gateway: all), MARINER_GATEWAY_URL (${layout
              .filter((p) => p.gatewayUrl)
              .map((p) => p.name)
              .join(', ')}).
            Ports: MARINER_PORT (default 8080) for traffic
            (${layout
              .filter((p) => p.subgraphPorts.length > 0)
              .map((p) => `${p.name}: its subgraphs on the next ports, ${p.subgraphPorts.join(', ')}`)
              .join('; ')});
            MARINER_OPS_PORT (default 9090) for /healthz, /readyz and /metrics. On SIGTERM: /readyz says
            stopping, traffic is still served for MARINER_SHUTDOWN_DELAY_MS (5000), then requests in
            flight get MARINER_DRAIN_TIMEOUT_MS (20000).`;

/** The `mariner serve` command: starts the component and stops it on SIGTERM/SIGINT. */
export async function serveCommand(args: string[]): Promise<void> {
  const { positionals, values } = parseArgs({ args, options: { 'migrate-only': { type: 'boolean' } }, allowPositionals: true, strict: true });
  if (values['migrate-only']) {
    if (positionals.length > 0) throw new ConfigError('serve --migrate-only takes no component: it runs the migrations of all of them');
    const config = loadConfig();
    await migrateOnly(config, createLogger(config.logLevel).child({ component: 'migrations' }));
    return;
  }
  const [name, ...extra] = positionals;
  if (!isComponentName(name) || extra.length > 0) {
    throw new ConfigError(`serve needs one component: ${COMPONENT_NAMES.join(', ')}${name && !isComponentName(name) ? ` (got "${name}")` : ''}`);
  }
  const { config, serve } = loadServeConfig(name);
  const logger = createLogger(config.logLevel).child({ component: name });
  const running = await startComponent(config, serve, logger);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const limitMs = serve.shutdownDelayMs + serve.drainTimeoutMs + 10_000;
    const timer = setTimeout(() => {
      logger.error({ limitMs }, 'shutdown took too long; exiting');
      process.exit(1);
    }, limitMs);
    timer.unref();
    await running.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  await running.started;
}
