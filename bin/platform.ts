import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { RequestListener, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { createGateway, type Gateway } from '../gateway/index.js';
import type { OidcVerifier } from '../gateway/oidc.js';
import { ClusterAccessDirectory } from '../lib/clusterAccess.js';
import type { MarinerConfig } from '../lib/config.js';
import { openDatabase, type Database } from '../lib/db.js';
import { ensurePrivateDirSync, PRIVATE_FILE_MODE } from '../lib/privateDir.js';
import { sendJson } from '../lib/http.js';
import { InternalTokens } from '../lib/identity.js';
import type { Logger } from '../lib/logging.js';
import { startSubgraph, type RunningSubgraph } from '../lib/subgraphServer.js';
import { trackRequests, type RequestTracker } from '../lib/requestTracker.js';
import { createRestCompat, type RestCompat } from '../rest-compat/index.js';
import type { SubgraphName } from '../schema/subgraphs.js';
import { createRbacSubgraph, loadRoleScopes } from '../subgraphs/rbac/index.js';
import { createUsersSubgraph, logBootstrap } from '../subgraphs/users/index.js';
import { createFilesSubgraph } from '../subgraphs/files/index.js';
import { createModelsSubgraph } from '../subgraphs/models/index.js';
import { createObjectStore, type ObjectStore } from '../lib/objectStore/index.js';
import { startAgent, type Agent } from '../agent/index.js';
import { createClustersSubgraph, type ClusterStore } from '../subgraphs/clusters/index.js';
import { createSessions, type Sessions } from '../subgraphs/sessions/index.js';
import { createInferenceSubgraph } from '../subgraphs/inference/index.js';
import { createVectorStoresSubgraph } from '../subgraphs/vectorstores/index.js';
import { createJobsSubgraph } from '../subgraphs/jobs/index.js';
import { createPubSub } from '../lib/pubsub.js';
import { installDemoModel } from './demoModel.js';
import { closeServer, createPublicServer, listen, refuseUpgrade, type UpgradeListener } from './httpServers.js';
import { demoTrainerCommand } from '../agent/trainers/demoTrainer.js';
import { DEFAULT_TENANT_ID } from '../subgraphs/users/index.js';

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
 * Starts every component in one process (`mariner up`): each subgraph on its own loopback port
 * (real federation), the gateway and the REST layer on the public port.
 */
export async function startPlatform(config: MarinerConfig, options: PlatformOptions): Promise<Platform> {
  const { logger } = options;
  // Generated secrets, the embedded database and (by default) the object store: this user's alone.
  ensurePrivateDirSync(config.dataDir);
  const secret = internalTokenSecret(config);
  const tokens = new InternalTokens(secret, config.internalTokenTtlSeconds);
  const roleScopes = loadRoleScopes(config.roleScopesFile);
  const db = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  const started: RunningSubgraph[] = [];
  const stoppers: (() => Promise<void>)[] = [];
  let objectStore: ObjectStore | undefined;
  let gateway: Gateway | undefined;
  let server: Server | undefined;
  let requests: RequestTracker | undefined;
  let internalServer: Server | undefined;
  let restLayer: RestCompat | undefined;
  let sessions: Sessions | undefined;
  let agent: Agent | undefined;
  const close = async () => {
    // Gracefully first: no new connections, and requests in flight (streamed answers too, through the
    // agent's tunnel) get the drain's time; streams still open then end with an error event.
    const drainTimeoutMs = options.drainTimeoutMs ?? 20_000;
    if (requests && !(await requests.drain(drainTimeoutMs))) logger.warn({ drainTimeoutMs }, 'requests still in flight at the drain limit are cut');
    await restLayer?.close();
    await agent?.close();
    await sessions?.close();
    if (server) {
      const s = server;
      const closed = new Promise<void>((resolve) => s.close(() => resolve()));
      s.closeAllConnections();
      // Upgraded connections (graphql-ws clients) are no longer the HTTP server's to close: the
      // gateway closes them (1001, "server shutting down"), or the server would wait for them forever.
      await gateway?.stop();
      await closed;
      if (internalServer) await closeServer(internalServer);
    } else {
      await gateway?.stop();
    }
    await Promise.all(started.map((s) => s.close()));
    await Promise.all(stoppers.map((stop) => stop()));
    await objectStore?.close();
    await db.close();
  };
  try {
    const users = await createUsersSubgraph(db);
    const bootstrap = await users.store.bootstrap({ adminEmail: config.adminEmail, adminApiKey: config.adminApiKey });
    // A generated key is not logged: `mariner up` prints it once in its banner, to the person at the terminal.
    logBootstrap(bootstrap, logger);
    const serverOptions = { host: '127.0.0.1', port: 0, tokens, logger, maxBodyBytes: config.limits.maxBodyBytes };
    started.push(await startSubgraph(users.definition, serverOptions));
    started.push(await startSubgraph(createRbacSubgraph(roleScopes), serverOptions));
    objectStore = await createObjectStore(config.objectStore);
    const files = await createFilesSubgraph(db, objectStore, config.files, logger);
    stoppers.push(files.stop);
    started.push(await startSubgraph(files.definition, serverOptions));
    const models = await createModelsSubgraph(db, objectStore, {
      filesUrl: started.find((s) => s.name === 'files')!.url,
      tokens,
      loadLeaseSeconds: config.models.loadLeaseSeconds,
    });
    started.push(await startSubgraph(models.definition, serverOptions));
    if (options.demoModel) await installDemoModel(models.store, objectStore, DEFAULT_TENANT_ID);
    const clusters = await createClustersSubgraph(db, { statusStaleSeconds: config.clusters.statusStaleSeconds });
    started.push(await startSubgraph(clusters.definition, serverOptions));
    let graphqlUrl = '';
    const clusterAccess = new ClusterAccessDirectory({ clustersUrl: () => started.find((s) => s.name === 'clusters')!.url, tokens });
    sessions = createSessions({ config, graphqlUrl: () => graphqlUrl, secretKey: secret, clusters: clusterAccess, logger });
    started.push(await startSubgraph(sessions.definition, serverOptions));
    const modelsUrl = started.find((s) => s.name === 'models')!.url;
    const pubsub = await createPubSub(db, config.databaseUrl);
    stoppers.push(() => pubsub.close());
    const inference = await createInferenceSubgraph(db, {
      pubsub,
      modelsUrl,
      clusterAccess,
      tokens,
      transport: sessions.transport,
      settings: config.inference,
      logger,
      vectorStoresUrl: () => started.find((s) => s.name === 'vectorstores')!.url,
    });
    stoppers.push(inference.stop);
    started.push(await startSubgraph(inference.definition, serverOptions));
    const urlOf = (name: SubgraphName) => started.find((s) => s.name === name)!.url;
    const jobs = await createJobsSubgraph(db, {
      peers: { files: urlOf('files'), models: urlOf('models'), users: urlOf('users'), clusters: urlOf('clusters') },
      tokens,
      transport: sessions.transport,
      pubsub,
      settings: config.jobs,
      secretKey: secret,
      logger,
    });
    stoppers.push(jobs.stop);
    started.push(await startSubgraph(jobs.definition, serverOptions));
    // Vector stores ask the files subgraph for files and embed through the inference subgraph, as the caller.
    const vectorStores = await createVectorStoresSubgraph(db, {
      config: config.vectorStores,
      objectStore,
      tokens,
      filesUrl: () => started.find((s) => s.name === 'files')!.url,
      inferenceUrl: () => started.find((s) => s.name === 'inference')!.url,
      logger,
    });
    stoppers.push(vectorStores.stop);
    started.push(await startSubgraph(vectorStores.definition, serverOptions));
    const subgraphUrls = Object.fromEntries(started.map((s) => [s.name, s.url])) as Record<SubgraphName, string>;

    gateway = await createGateway({ config, subgraphUrls, tokens, logger, roleScopes, ...(options.oidc !== undefined ? { oidc: options.oidc } : {}) });
    const rest = createRestCompat({ graphqlUrl: () => graphqlUrl, objectStore, logger });
    restLayer = rest;
    const g = gateway;
    const { tunnelEndpoint, userProxy } = sessions;
    const handle: RequestListener = (req, res) => {
      const pathname = new URL(req.url ?? '/', 'http://mariner').pathname;
      if (pathname === '/graphql') return void g.handle(req, res);
      if (tunnelEndpoint.handles(pathname)) {
        const { status, message } = tunnelEndpoint.refusePlainRequest();
        return sendJson(res, status, { error: { message } });
      }
      if (userProxy.handles(pathname)) return void userProxy.handle(req, res);
      if (pathname === '/v1' || pathname.startsWith('/v1/')) return void rest.handle(req, res);
      if (pathname === '/healthz') return sendJson(res, 200, { status: 'ok' });
      if (pathname === '/readyz') {
        // Ready: migrations ran and the gateway loaded the supergraph before we listened; the
        // database must still answer.
        db.knex
          .raw('select 1')
          .then(() => sendJson(res, 200, { status: 'ready' }))
          .catch(() => sendJson(res, 503, { status: 'database unreachable' }));
        return;
      }
      sendJson(res, 404, { error: 'not found: GraphQL is at /graphql, the OpenAI API at /v1' });
    };
    const upgrade: UpgradeListener = (req, socket, head) => {
      const pathname = new URL(req.url ?? '/', 'http://mariner').pathname;
      if (pathname === '/graphql') return g.handleUpgrade(req, socket, head);
      if (tunnelEndpoint.handles(pathname)) return void tunnelEndpoint.handleUpgrade(req, socket, head);
      if (userProxy.handles(pathname)) return void userProxy.handleUpgrade(req, socket, head);
      refuseUpgrade(socket);
    };
    server = createPublicServer(handle, upgrade);
    const s = server;
    requests = trackRequests(s);
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(config.port, config.host, () => resolve());
    });
    const { port } = s.address() as AddressInfo;
    const host = config.host.includes(':') ? `[${config.host}]` : config.host;
    // The REST layer and sessions call the gateway on a loopback port of their own, which stays open
    // while the public port drains: a request in flight may still need GraphQL (as in `mariner serve`).
    internalServer = createPublicServer(handle, upgrade);
    graphqlUrl = `http://127.0.0.1:${await listen(internalServer, 0, '127.0.0.1')}/graphql`;
    const url = `http://${host}:${port}`;
    if (config.clusters.defaultCluster) {
      // The embedded agent dials the public port like any agent: the real tunnel, over loopback.
      const loopback = ['0.0.0.0', '::', '[::]'].includes(config.host) ? '127.0.0.1' : host;
      agent = await startAgent({
        controlPlaneUrl: `http://${loopback}:${port}`,
        registrationKey: await defaultClusterKey(config, clusters.store),
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
    return {
      url,
      adminApiKey: bootstrap.adminApiKey,
      subgraphUrls,
      tokens,
      db,
      objectStore,
      clusters: clusters.store,
      sessions,
      agent,
      gatewaySharedSubscriptions: () => g.sharedSubscriptions(),
      close,
    };
  } catch (error) {
    await close().catch(() => undefined);
    throw error;
  }
}
