import type { RequestListener, Server } from 'node:http';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createGateway, type Gateway } from '../gateway/index.js';
import { ClusterAccessDirectory } from '../lib/clusterAccess.js';
import { ConfigError, type MarinerConfig } from '../lib/config.js';
import { openDatabase, type Database } from '../lib/db.js';
import { sendJson } from '../lib/http.js';
import { InternalTokens } from '../lib/identity.js';
import { createLogger, type Logger } from '../lib/logging.js';
import { createObjectStore, type ObjectStore } from '../lib/objectStore/index.js';
import { createPubSub } from '../lib/pubsub.js';
import { trackRequests } from '../lib/requestTracker.js';
import { startSubgraph, type SubgraphContext, type SubgraphDefinition, type SubgraphServerOptions } from '../lib/subgraphServer.js';
import { createRestCompat } from '../rest-compat/index.js';
import type { SubgraphName } from '../schema/subgraphs.js';
import { createClustersSubgraph } from '../subgraphs/clusters/index.js';
import { createFilesSubgraph } from '../subgraphs/files/index.js';
import { createInferenceSubgraph } from '../subgraphs/inference/index.js';
import { createJobsSubgraph } from '../subgraphs/jobs/index.js';
import { createModelsSubgraph } from '../subgraphs/models/index.js';
import { createRbacSubgraph, loadRoleScopes } from '../subgraphs/rbac/index.js';
import { createSessions } from '../subgraphs/sessions/index.js';
import { createUsersSubgraph, logBootstrap, saveGeneratedAdminKey } from '../subgraphs/users/index.js';
import { createVectorStoresSubgraph } from '../subgraphs/vectorstores/index.js';
import { closeServer, createPublicServer, listen, refuseUpgrade, urlHost, type UpgradeListener } from './httpServers.js';
import { createComponentMetrics, type ComponentMetrics } from './metrics.js';
import { startOpsServer } from './opsServer.js';
import { COMPONENT_NAMES, isComponentName, loadServeConfig, type ServeSettings } from './serveConfig.js';

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

/** What /readyz says while the component is not ready yet. */
type Phase = 'waiting for the database' | 'running migrations' | 'loading the supergraph' | 'starting' | 'ready' | 'stopping';

const READINESS_QUERY_TIMEOUT_MS = 2_000;

/**
 * Starts one component. Returns as soon as the operations port listens; the rest (database, migrations,
 * subgraphs) continues behind `started`, so a probe sees "not ready" rather than a refused connection.
 */
export async function startComponent(config: MarinerConfig, serve: ServeSettings, logger: Logger): Promise<RunningComponent> {
  const log = logger.child({ component: serve.component });
  const metrics = createComponentMetrics(serve.component);
  let phase: Phase = serve.usesDatabase ? 'waiting for the database' : 'starting';
  let db: Database | undefined;
  // Stopped in reverse order of start: the public port first, the database last.
  const stoppers: (() => Promise<void>)[] = [];
  // Every HTTP server's graceful stop (stop accepting, wait for requests in flight), run together first.
  const drainers: ((timeoutMs: number) => Promise<boolean>)[] = [];
  const inFlight: (() => number)[] = [];
  metrics.observeInFlight(() => inFlight.reduce((sum, count) => sum + count(), 0));
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
    if (serve.usesDatabase) {
      db = await openWhenReachable(config.databaseUrl!, config.dataDir, log, () => stopping);
      const opened = db;
      stoppers.push(() => opened.close());
      phase = 'running migrations';
    }
    const host = config.host;
    let nextPort = serve.component === 'sessions' ? config.port + 1 : config.port;
    const subgraphOptions = (): SubgraphServerOptions => {
      const port = config.port === 0 ? 0 : nextPort++;
      return { host, port, tokens, logger: log, maxBodyBytes: config.limits.maxBodyBytes };
    };
    const serveSubgraph = async <Ctx extends SubgraphContext>(definition: SubgraphDefinition<Ctx>) => {
      const running = await startSubgraph(definition, { ...subgraphOptions(), plugins: [metrics.requestPlugin(definition.name)] });
      stoppers.push(() => running.close());
      drainers.push((timeoutMs) => running.drain(timeoutMs));
      inFlight.push(() => running.inFlight());
      // Its URL as this process reaches it (a wildcard address on loopback).
      const port = new URL(running.url).port;
      subgraphUrls[running.name as SubgraphName] = `http://${urlHost(host, Number(port))}/graphql`;
    };
    const objectStore = async (): Promise<ObjectStore> => {
      const store = await createObjectStore(config.objectStore, { logger: log });
      stoppers.push(() => store.close());
      return store;
    };
    const database = db!;
    const servePublic = async (server: Server) => {
      const requests = trackRequests(server);
      drainers.push((timeoutMs) => requests.drain(timeoutMs));
      inFlight.push(() => requests.inFlight());
      const port = await listen(server, config.port, host);
      stoppers.push(() => closeServer(server));
      url = `http://${urlHost(host, port)}`;
    };

    switch (serve.component) {
      case 'users': {
        const users = await createUsersSubgraph(database);
        const bootstrap = await users.store.bootstrap({ adminEmail: config.adminEmail, adminApiKey: config.adminApiKey });
        logBootstrap(bootstrap, log);
        // Never to the log: this process's output is the pod's log.
        if (bootstrap.adminApiKey) await saveGeneratedAdminKey(bootstrap.adminApiKey, config.dataDir, log);
        await serveSubgraph(users.definition);
        break;
      }
      case 'rbac':
        await serveSubgraph(createRbacSubgraph(loadRoleScopes(config.roleScopesFile)));
        break;
      case 'files': {
        const files = await createFilesSubgraph(database, await objectStore(), config.files, log);
        stoppers.push(files.stop);
        await serveSubgraph(files.definition);
        break;
      }
      case 'models': {
        const models = await createModelsSubgraph(database, await objectStore(), {
          filesUrl: serve.subgraphUrls.files!,
          tokens,
          loadLeaseSeconds: config.models.loadLeaseSeconds,
        });
        await serveSubgraph(models.definition);
        break;
      }
      case 'clusters': {
        const clusters = await createClustersSubgraph(database, { statusStaleSeconds: config.clusters.statusStaleSeconds });
        await serveSubgraph(clusters.definition);
        break;
      }
      case 'sessions': {
        // The tunnels end in this process, and inference (jobs too) sends its requests through them.
        const clusterAccess = new ClusterAccessDirectory({ clustersUrl: () => serve.subgraphUrls.clusters!, tokens });
        const sessions = createSessions({ config, graphqlUrl: () => serve.gatewayUrl!, secretKey: config.internalTokenSecret!, clusters: clusterAccess, logger: log });
        stoppers.push(() => sessions.close());
        metrics.observeTunnels(sessions.registry);
        await serveSubgraph(sessions.definition);
        const pubsub = await createPubSub(database, config.databaseUrl);
        stoppers.push(() => pubsub.close());
        // Several replicas: requests for a cluster whose tunnels end on another replica go there (peers.ts).
        const { peerPort, peerAddress, peerHeartbeatMs } = config.sessions;
        if (peerPort !== undefined) {
          await sessions.enablePeers({ db: database, pubsub, host, port: peerPort, address: peerAddress, heartbeatMs: peerHeartbeatMs });
        }
        const inference = await createInferenceSubgraph(database, {
          pubsub,
          modelsUrl: serve.subgraphUrls.models!,
          clusterAccess,
          // The `rag` tool of chat completions searches vector stores as the caller (the chart gives every
          // component every address; without this one the tool answers that it is not available).
          ...(serve.subgraphUrls.vectorstores ? { vectorStoresUrl: () => serve.subgraphUrls.vectorstores! } : {}),
          tokens,
          transport: sessions.transport,
          settings: config.inference,
          onUsage: metrics.inferenceObserver(),
          logger: log,
        });
        stoppers.push(inference.stop);
        metrics.observeRuntimes(() => inference.store.all());
        await serveSubgraph(inference.definition);
        const { files, models, users, clusters } = serve.subgraphUrls as Record<SubgraphName, string>;
        const jobs = await createJobsSubgraph(database, {
          peers: { files, models, users, clusters },
          tokens,
          transport: sessions.transport,
          pubsub,
          settings: config.jobs,
          secretKey: config.internalTokenSecret!,
          logger: log,
        });
        stoppers.push(jobs.stop);
        metrics.observeJobs(() => jobs.store.countByStatus());
        await serveSubgraph(jobs.definition);
        const { tunnelEndpoint, userProxy } = sessions;
        const server = createPublicServer(
          (req, res) => {
            const pathname = new URL(req.url ?? '/', 'http://mariner').pathname;
            if (tunnelEndpoint.handles(pathname)) {
              const { status, message } = tunnelEndpoint.refusePlainRequest();
              return sendJson(res, status, { error: { message } });
            }
            if (userProxy.handles(pathname)) return void userProxy.handle(req, res);
            sendJson(res, 404, { error: { message: 'not found: this is the sessions endpoint (/v1/sessions/...)' } });
          },
          (req, socket, head) => {
            const pathname = new URL(req.url ?? '/', 'http://mariner').pathname;
            if (tunnelEndpoint.handles(pathname)) return void tunnelEndpoint.handleUpgrade(req, socket, head);
            if (userProxy.handles(pathname)) return void userProxy.handleUpgrade(req, socket, head);
            refuseUpgrade(socket);
          },
        );
        await servePublic(server);
        break;
      }
      case 'vectorstores': {
        // Files are asked of the files subgraph and embeddings of inference, as the caller.
        const vectorStores = await createVectorStoresSubgraph(database, {
          config: config.vectorStores,
          objectStore: await objectStore(),
          tokens,
          filesUrl: () => serve.subgraphUrls.files!,
          inferenceUrl: () => serve.subgraphUrls.inference!,
          logger: log,
        });
        stoppers.push(vectorStores.stop);
        await serveSubgraph(vectorStores.definition);
        break;
      }
      case 'gateway': {
        phase = 'loading the supergraph';
        const store = await objectStore();
        const g: Gateway = await createGateway({
          config,
          subgraphUrls: serve.subgraphUrls as Record<SubgraphName, string>,
          tokens,
          logger: log,
          roleScopes: loadRoleScopes(config.roleScopesFile),
          plugins: [metrics.requestPlugin('gateway')],
        });
        metrics.observeSubscriptions(() => g.sharedSubscriptions());
        let graphqlUrl = '';
        const rest = createRestCompat({ graphqlUrl: () => graphqlUrl, objectStore: store, logger: log });
        const handle: RequestListener = (req, res) => {
          const pathname = new URL(req.url ?? '/', 'http://mariner').pathname;
          if (pathname === '/graphql') return void g.handle(req, res);
          if (pathname === '/v1' || pathname.startsWith('/v1/')) return void rest.handle(req, res);
          sendJson(res, 404, { error: 'not found: GraphQL is at /graphql, the OpenAI API at /v1' });
        };
        const upgrade: UpgradeListener = (req, socket, head) => {
          const pathname = new URL(req.url ?? '/', 'http://mariner').pathname;
          if (pathname === '/graphql') return g.handleUpgrade(req, socket, head);
          refuseUpgrade(socket);
        };
        // rest-compat calls the gateway of its own process on a loopback port of its own, which stays
        // open while the public port drains: a REST request in flight (an upload about to complete, a
        // streamed completion) still reaches GraphQL after the public port stopped accepting.
        const loopback = createPublicServer(handle, upgrade);
        graphqlUrl = `http://127.0.0.1:${await listen(loopback, 0, '127.0.0.1')}/graphql`;
        stoppers.push(() => closeServer(loopback));
        await servePublic(createPublicServer(handle, upgrade));
        // Stops run last-pushed first: the gateway closes its graphql-ws connections (1001, "server
        // shutting down") before the servers go, so subscribers get a reason rather than a cut socket.
        stoppers.push(() => g.stop());
        // First of all (after the drain): streamed answers still open end with an error event while
        // their connections and the gateway's subscriptions are still there to carry it.
        stoppers.push(() => rest.close());
        break;
      }
    }
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
        const drained = await Promise.all(drainers.map((drain) => drain(serve.drainTimeoutMs)));
        if (drained.includes(false)) log.warn({ drainTimeoutMs: serve.drainTimeoutMs }, 'requests still in flight at the drain limit are cut');
        for (const stop of stoppers.reverse()) await stop().catch((error: unknown) => log.warn({ err: error }, 'stop failed'));
        stoppers.length = 0;
        await ops.close();
      })();
      return closing;
    },
  };
}

/**
 * Opens the database once it answers: a pod may start before PostgreSQL does. Each try is a single
 * connection (not a pool) so failures leave nothing behind; /readyz says what it waits for meanwhile.
 */
async function openWhenReachable(databaseUrl: string, dataDir: string, logger: Logger, stopping: () => boolean): Promise<Database> {
  for (let attempt = 0; ; attempt++) {
    const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5_000 });
    try {
      await client.connect();
      await client.end();
      return await openDatabase({ databaseUrl, dataDir });
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

export const SERVE_USAGE = `  serve     run one component, as the Helm chart does: mariner serve <component>
              components: ${COMPONENT_NAMES.join(', ')}
              (sessions also serves inference and jobs: they reach agents through the tunnels that end there;
              with several replicas, set MARINER_SESSIONS_PEER_PORT: a replica forwards requests for a
              cluster whose tunnels end on another one there)
            settings: the environment, or a JSON file of the same names in MARINER_CONFIG_FILE
            (the environment wins); required: MARINER_INTERNAL_TOKEN_SECRET (shared by all),
            DATABASE_URL (all but gateway and rbac), MARINER_SUBGRAPH_<NAME>_URL for the subgraphs
            a component calls (gateway: all), MARINER_GATEWAY_URL (sessions).
            Ports: MARINER_PORT (default 8080) for traffic (sessions: its subgraphs on the next
            ports: sessions 8081, inference 8082, jobs 8083); MARINER_OPS_PORT (default 9090) for /healthz,
            /readyz and /metrics. On SIGTERM: /readyz says stopping, traffic is still served for
            MARINER_SHUTDOWN_DELAY_MS (5000), then requests in flight get MARINER_DRAIN_TIMEOUT_MS (20000).`;

/** The `mariner serve` command: starts the component and stops it on SIGTERM/SIGINT. */
export async function serveCommand(args: string[]): Promise<void> {
  const { positionals } = parseArgs({ args, options: {}, allowPositionals: true, strict: true });
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
