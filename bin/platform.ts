import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { startAgent, type Agent } from '../agent/index.js';
import { demoTrainerCommand } from '../agent/trainers/demoTrainer.js';
import type { OidcVerifier } from '../gateway/oidc.js';
import type { MarinerConfig } from '../lib/config.js';
import { openDatabase, type Database } from '../lib/db.js';
import { sendJson } from '../lib/http.js';
import { InternalTokens } from '../lib/identity.js';
import type { Logger } from '../lib/logging.js';
import type { ObjectStore } from '../lib/objectStore/index.js';
import { ensurePrivateDirSync, PRIVATE_FILE_MODE } from '../lib/privateDir.js';
import type { SubgraphName } from '../schema/subgraphs.js';
import { clustersComponent, type ClusterStore } from '../subgraphs/clusters/index.js';
import { modelsComponent } from '../subgraphs/models/index.js';
import { sessionsComponent, type Sessions } from '../subgraphs/sessions/index.js';
import { DEFAULT_TENANT_ID, usersComponent } from '../subgraphs/users/index.js';
import { ComponentHost, type HostRoutes } from './componentHost.js';
import { COMPONENTS } from './components.js';
import { installDemoModel } from './demoModel.js';
import { createComponentMetrics, fromLoopback, sendMetrics } from './metrics.js';
import { createGatewayComponent, gatewayComponent } from './gatewayComponent.js';

export interface Platform {
  /** Public base URL: GraphQL at `${url}/graphql`, OpenAI API at `${url}/v1`. */
  url: string;
  /** The bootstrap admin key, when this start created it (shown once). */
  adminApiKey: string | undefined;
  subgraphUrls: Record<SubgraphName, string>;
  tokens: InternalTokens;
  db: Database;
  objectStore: ObjectStore;
  clusters: ClusterStore;
  sessions: Sessions;
  /** The embedded local agent of the default cluster (when MARINER_DEFAULT_CLUSTER is on). */
  agent: Agent | undefined;
  /** Upstream subscriptions the gateway holds open (each shared by its subscribers). */
  gatewaySharedSubscriptions(): number;
  close(): Promise<void>;
}

export interface PlatformOptions {
  logger: Logger;
  /** Install the built-in demo model (`mariner up --demo-model`). */
  demoModel?: boolean;
  /** Test hook: a ready OIDC verifier instead of one built from config. */
  oidc?: OidcVerifier | null;
  /**
   * On close, how long requests in flight (streamed answers included) may take to finish once no new
   * connection is accepted (MARINER_DRAIN_TIMEOUT_MS; default 20 s).
   */
  drainTimeoutMs?: number;
}

/** The internal token secret: from config, else generated once into the data dir (mode 0600). */
function internalTokenSecret(config: MarinerConfig): string {
  if (config.internalTokenSecret) return config.internalTokenSecret;
  const file = path.join(config.dataDir, 'internal-token-secret');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const secret = randomBytes(32).toString('base64url');
  writeFileSync(file, secret, { mode: PRIVATE_FILE_MODE });
  chmodSync(file, PRIVATE_FILE_MODE);
  return secret;
}

/**
 * The default cluster's registration key, kept in the data dir (mode 0600) so the embedded agent
 * reconnects after a restart; the database holds only its hash.
 */
async function defaultClusterKey(config: MarinerConfig, clusters: ClusterStore): Promise<string> {
  const file = path.join(config.dataDir, 'default-cluster-registration-key');
  const kept = existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
  const { registrationKey } = await clusters.ensureDefaultCluster(DEFAULT_TENANT_ID, 'default', kept);
  if (registrationKey !== kept) {
    writeFileSync(file, registrationKey, { mode: PRIVATE_FILE_MODE });
    chmodSync(file, PRIVATE_FILE_MODE);
  }
  return registrationKey;
}

/**
 * One full garbage collection, a second after the platform is up. A start allocates far more than it
 * keeps (every subgraph's schema built, the supergraph planned, the code compiled), and V8 holds on to
 * that garbage while the platform idles: collecting it returned about 30 MB of `mariner up`'s idle RSS
 * (test/bench/startup.ts). Node exposes no collector without --expose-gc; this sets that flag and takes
 * `gc` from a fresh context, the usual way to reach it at run time. A timer that does not keep the
 * process alive, after the caller has printed that it is ready.
 */
function collectStartGarbage(): void {
  setTimeout(() => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('typeof gc === "function" ? gc : undefined') as (() => void) | undefined;
    gc?.();
  }, 1000).unref();
}

/**
 * Starts every component of the registry in one process (`mariner up`): each subgraph on its own
 * loopback port (real federation), the gateway, the REST layer and the agents' tunnel endpoint on the
 * public port; then the default cluster's embedded agent.
 */
export async function startPlatform(config: MarinerConfig, options: PlatformOptions): Promise<Platform> {
  const { logger } = options;
  // Generated secrets, the embedded database and (by default) the object store: this user's alone.
  ensurePrivateDirSync(config.dataDir);
  const secret = internalTokenSecret(config);
  const tokens = new InternalTokens(secret, config.internalTokenTtlSeconds);
  const db = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  // Test hook: the gateway with a ready OIDC verifier.
  const components =
    options.oidc === undefined ? COMPONENTS : COMPONENTS.map((c) => (c === gatewayComponent ? createGatewayComponent({ oidc: options.oidc }) : c));
  // The same Prometheus series as `mariner serve` components, all of them in one registry (issue 24: `mariner up` served no /metrics).
  const metrics = createComponentMetrics('up');
  const host = new ComponentHost({
    config,
    components,
    db,
    tokens,
    secretKey: secret,
    logger,
    observers: metrics,
    embedded: true,
    subgraphHost: '127.0.0.1',
    subgraphPort: () => 0,
  });
  let agent: Agent | undefined;
  const close = async () => {
    // Gracefully first: no new connections, and requests in flight (streamed answers too, through the
    // agent's tunnel) get the drain's time.
    const drainTimeoutMs = options.drainTimeoutMs ?? 20_000;
    if (!(await host.drain(drainTimeoutMs, { subgraphs: false }))) logger.warn({ drainTimeoutMs }, 'requests still in flight at the drain limit are cut');
    // The gateway first: streams still open end with an error event while the runtimes still answer;
    // then the embedded agent, before its tunnel closes with the other components.
    await host.stop([gatewayComponent.name]);
    await agent?.close();
    await host.close();
    await db.close();
  };
  try {
    await host.start();
    const objectStore = await host.sharedObjectStore();
    const { bootstrap } = host.exposed(usersComponent);
    const clusters = host.exposed(clustersComponent).store;
    if (options.demoModel) await installDemoModel(host.exposed(modelsComponent).store, objectStore, DEFAULT_TENANT_ID);
    metrics.observeInFlight(() => host.inFlight());
    const readiness: HostRoutes = {
      paths: ['/healthz', '/readyz', '/metrics'],
      handle(req, res) {
        const pathname = new URL(req.url ?? '/', 'http://mariner').pathname;
        if (pathname === '/healthz') return sendJson(res, 200, { status: 'ok' });
        // Prometheus on the public port, to this machine only: the series name every tenant's models
        // and clusters (`mariner serve` has them on its operations port, apart from traffic).
        if (pathname === '/metrics') {
          if (fromLoopback(req)) return sendMetrics(metrics.registry, res, logger);
          return sendJson(res, 403, {
            error: { message: '/metrics answers requests from this machine only', type: 'invalid_request_error', param: null, code: 'forbidden' },
          });
        }
        // Ready: migrations ran and the gateway loaded the supergraph before we listened; the
        // database must still answer.
        db.knex
          .raw('select 1')
          .then(() => sendJson(res, 200, { status: 'ready' }))
          .catch(() => sendJson(res, 503, { status: 'database unreachable' }));
      },
    };
    const port = await host.listenPublic(config.host, config.port, readiness);
    const hostname = config.host.includes(':') ? `[${config.host}]` : config.host;
    const url = `http://${hostname}:${port}`;
    if (config.clusters.defaultCluster) {
      // The embedded agent dials the public port like any agent: the real tunnel, over loopback.
      const loopback = ['0.0.0.0', '::', '[::]'].includes(config.host) ? '127.0.0.1' : hostname;
      agent = await startAgent({
        controlPlaneUrl: `http://${loopback}:${port}`,
        registrationKey: await defaultClusterKey(config, clusters),
        executor: 'local',
        // The embedded agent shares the platform's object store; runtimes cache weights in the data dir.
        objectStore,
        cacheDir: path.join(config.dataDir, 'runtime-cache'),
        // Fine-tuning on this machine: the configured trainer, else (with --demo-model) the demo trainer.
        jobs: {
          trainerCommand: config.jobs.localTrainerCommand ?? (options.demoModel ? demoTrainerCommand() : undefined),
          runBatchJobs: config.jobs.localBatchJobs,
          workDir: path.join(config.dataDir, 'jobs'),
        },
        loader: {
          objectStore,
          huggingFace: { endpoint: config.huggingFace.endpoint, ...(config.huggingFace.token ? { token: config.huggingFace.token } : {}) },
        },
        heartbeatIntervalMs: config.sessions.heartbeatIntervalMs,
        heartbeatTimeoutMs: config.sessions.heartbeatTimeoutMs,
        autoscaler: config.autoscaler,
        logger,
      });
      await agent.whenConnected();
    }
    const { gateway } = host.exposed(gatewayComponent);
    collectStartGarbage();
    return {
      url,
      adminApiKey: bootstrap.adminApiKey,
      subgraphUrls: host.subgraphUrls as Record<SubgraphName, string>,
      tokens,
      db,
      objectStore,
      clusters,
      sessions: host.exposed(sessionsComponent),
      agent,
      gatewaySharedSubscriptions: () => gateway.sharedSubscriptions(),
      close,
    };
  } catch (error) {
    await close().catch(() => undefined);
    throw error;
  }
}
