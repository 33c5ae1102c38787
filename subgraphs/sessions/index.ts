import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { hostname } from 'node:os';
import type { ClusterAccessDirectory } from '../../lib/clusterAccess.js';
import { defineComponent, type PublicRoutes } from '../../lib/component.js';
import type { MarinerConfig } from '../../lib/config.js';
import type { Database } from '../../lib/db.js';
import { ErrorCode, MarinerError } from '../../lib/errors.js';
import { graphqlRequest } from '../../lib/graphqlClient.js';
import { sendJson } from '../../lib/http.js';
import type { InternalTokens, Worker } from '../../lib/identity.js';
import { asSystem, createInternalClient } from '../../lib/internalClient.js';
import { TUNNEL_UPGRADE_PATH, TUNNEL_WEBSOCKET_PATH } from '../../lib/tunnel.js';
import { randomString } from '../../lib/ids.js';
import { createLoginTickets } from '../../lib/loginTicket.js';
import type { Logger } from '../../lib/logging.js';
import type { PubSub } from '../../lib/pubsub.js';
import type { SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import type { SessionsContext } from './context.js';
import { createKubeProxy, SESSIONS_PREFIX } from './kubeProxy.js';
import { createLoginTicketRoute } from './loginTicketRoute.js';
import { FederationPlacer, type FederationCluster } from './federationPlacement.js';
import { createFederationRoutes, type FederationRoutes } from './federationRoutes.js';
import { FederationStore } from './federationStore.js';
import { FederationClustersDocument } from './generated/clustersOperations.js';
import { sessionAuditTo, type SessionAudit } from './sessionAudit.js';
import { migrations } from './migrations/index.js';
import { createNotebookProxy } from './notebookProxy.js';
import { ClusterTransportRouter, peerTokens, startPeerServer } from './peers.js';
import { pollReports, subgraphDelivery, type ReportDelivery } from './reportPoller.js';
import { resolvers } from './resolvers.js';
import { createSessionAuthorizer } from './sessionAuth.js';
import { createSessionCookies } from './sessionCookie.js';
import { TunnelDirectory } from './tunnelDirectory.js';
import { createTunnelEndpoint, type TunnelEndpoint } from './tunnelEndpoint.js';
import { TunnelRegistry } from './tunnelRegistry.js';
import { UsedLoginTickets } from './usedLoginTickets.js';

export { classifyKubePath, SESSIONS_PREFIX } from './kubeProxy.js';
export { CLUSTER_ALLOW_LIST, EXEC_ALLOW_LIST, NAMESPACED_ALLOW_LIST, refusedKubeRequest } from './kubeAllowList.js';
export { LOGIN_TICKETS_PATH } from './loginTicketRoute.js';
export { isNotebookPath, parseNotebookPath } from './notebookProxy.js';
export { ClusterTransportRouter } from './peers.js';
export { PEER_CLUSTER_HEADER, PEER_TOKEN_HEADER, peerTokens } from './peerTokens.js';
export { RemoteAgentTunnels } from './remoteTunnels.js';
export { NoTunnelError, TunnelRegistry, type TunnelInfo } from './tunnelRegistry.js';

/** The schema of the sessions component's tables (its tunnel directory, peers.ts; federated Jobs; used sign-in tickets). */
export const SESSIONS_SCHEMA = 'sessions';

/** What serves users' requests under `/v1/sessions/` (the public server routes them here). */
export interface UserProxy {
  handles(pathname: string): boolean;
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void>;
}

export interface Sessions {
  definition: SubgraphDefinition<SessionsContext>;
  registry: TunnelRegistry;
  /**
   * How the user proxies (and, in one process, inference and jobs) reach a cluster's agent: a local
   * tunnel, or (after `enablePeers`) the replica that holds one.
   */
  transport: ClusterTransportRouter;
  /**
   * Under `mariner serve` (peers.ts): serves the peer endpoint on `port` (0: any) and advertises `address`
   * (default `<host>:<port>`) to the other replicas and to the inference and jobs processes, through the
   * tunnel directory (its table migrated).
   */
  enablePeers(options: {
    db: Database;
    pubsub: PubSub;
    host: string;
    port: number;
    address?: string | undefined;
    heartbeatMs: number;
  }): Promise<{ port: number; address: string; replicaId: string }>;
  /** Agents dial here (`/v1/sessions-worker-service/...`, upgrade requests only). */
  tunnelEndpoint: TunnelEndpoint;
  /**
   * Users' requests under `/v1/sessions/<cluster>/...`: notebooks (`.../v1/services/notebooks/...`,
   * notebookProxy.ts) and the Kubernetes API (everything else, kubeProxy.ts); and `/v1/sessions/login_tickets`,
   * the notebooks' one-time sign-in tickets (loginTicketRoute.ts).
   */
  userProxy: UserProxy;
  close(): Promise<void>;
}

const WORKER_CLUSTER = 'query AgentTunnelWorker { workerCluster { clusterId clusterName tenantId organizationId sharedWithAllOrganizations organizationIds } }';

/**
 * The sessions component (LLMariner session manager): the tunnel registry, the endpoint agents
 * dial, the user-facing Kubernetes API and notebook proxies, and the subgraph that shows tunnel state. Registration
 * keys and user credentials are checked by the gateway, like every other request.
 */
export function createSessions(options: {
  settings: MarinerConfig['sessions'];
  graphqlUrl: () => string;
  /** The internal token secret, from which the browser session cookie's and the sign-in tickets' keys are derived (sessionCookie.ts, lib/loginTicket.ts). */
  secretKey: string;
  /** The component's database: its tables (the used sign-in tickets; the tunnel directory and federated Jobs get theirs below). */
  db: Database;
  /** Whom each cluster serves, asked of the clusters subgraph (the proxies admit only clusters the caller's organization may use). */
  clusters: ClusterAccessDirectory;
  /** Where the agents' reports go (reportPoller.ts); without it, they are not asked for. */
  deliverReports?: ReportDelivery;
  /** Where the Kubernetes proxy records exec, attach, port-forward and writes (sessionAudit.ts); without it, nowhere. */
  audit?: SessionAudit;
  /**
   * The virtual cluster `federated` (federationRoutes.ts): its table's database, and the clusters an
   * organization may use with their GPUs. Without it, `/v1/sessions/federated/...` is not served.
   */
  federation?: { db: Database; schedulingClusters(requestId: string, tenantId: string, organizationId: string): Promise<FederationCluster[]> };
  logger: Logger;
}): Sessions {
  const logger = options.logger.child({ component: 'sessions' });
  const verifyRegistrationKey = async (key: string): Promise<Worker | null> => {
    try {
      const { workerCluster } = await graphqlRequest<{ workerCluster: Worker }>(options.graphqlUrl(), WORKER_CLUSTER, {}, { authorization: `Bearer ${key}` });
      return workerCluster;
    } catch (error) {
      if (error instanceof MarinerError && (error.code === ErrorCode.UNAUTHENTICATED || error.code === ErrorCode.FORBIDDEN)) return null;
      throw error;
    }
  };
  const { deliverReports } = options;
  const registry = new TunnelRegistry({
    ...options.settings,
    logger,
    revalidate: verifyRegistrationKey,
    // Job output and phases and runtime state come up each tunnel, polled for on it.
    onTunnel: deliverReports ? (tunnel) => void pollReports({ ...tunnel, deliver: deliverReports }) : undefined,
  });
  const tunnelEndpoint = createTunnelEndpoint({ registry, verifyRegistrationKey, logger });
  const authCacheMs = options.settings.authCacheMs;
  const transport = new ClusterTransportRouter(registry);
  let directory: TunnelDirectory | undefined;
  let peerServer: { close(): Promise<void> } | undefined;
  const authorizer = createSessionAuthorizer({ registry: transport, graphqlUrl: options.graphqlUrl, authCacheMs, clusters: options.clusters });
  const kubeProxy = createKubeProxy({ registry: transport, authorizer, logger, allowExec: options.settings.allowExec, audit: options.audit });
  const tickets = createLoginTickets(options.secretKey);
  const loginTicketRoute = createLoginTicketRoute({ authorizer, tickets, logger });
  const notebookProxy = createNotebookProxy({
    registry: transport,
    authorizer,
    cookies: createSessionCookies(options.secretKey),
    tickets,
    usedTickets: new UsedLoginTickets({ knex: options.db.knex, schema: SESSIONS_SCHEMA, logger }),
    lookupCacheMs: authCacheMs,
    logger,
  });
  let federation: { routes: FederationRoutes; placer: FederationPlacer } | undefined;
  if (options.federation) {
    const store = new FederationStore(options.federation.db.knex, SESSIONS_SCHEMA);
    const { schedulingClusters } = options.federation;
    const placer = new FederationPlacer({ store, transport, schedulingClusters, logger });
    placer.start();
    const routes = createFederationRoutes({ store, placer, transport, authorizer, schedulingClusters, audit: options.audit, logger });
    federation = { routes, placer };
  }
  const userProxy: UserProxy = {
    handles: (pathname) => kubeProxy.handles(pathname),
    handle: (req, res) =>
      loginTicketRoute.handles(pathOf(req))
        ? loginTicketRoute.handle(req, res)
        : federation?.routes.handles(pathOf(req))
          ? federation.routes.handle(req, res)
          : notebookProxy.handles(pathOf(req))
            ? notebookProxy.handle(req, res)
            : kubeProxy.handle(req, res),
    handleUpgrade: (req, socket, head) =>
      notebookProxy.handles(pathOf(req)) ? notebookProxy.handleUpgrade(req, socket, head) : kubeProxy.handleUpgrade(req, socket, head),
  };
  return {
    registry,
    transport,
    async enablePeers(peer) {
      const tokens = peerTokens(options.secretKey);
      const server = await startPeerServer({ registry, tokens, host: peer.host, port: peer.port, logger });
      peerServer = server;
      // A wildcard listen address names no host: this machine's name then (set the address in a pod).
      const advertised = peer.host === '0.0.0.0' || peer.host === '::' ? hostname() : peer.host;
      const address = peer.address ?? `${advertised.includes(':') ? `[${advertised}]` : advertised}:${server.port}`;
      const replicaId = `${hostname()}-${randomString(8)}`;
      directory = new TunnelDirectory({
        knex: peer.db.knex,
        schema: SESSIONS_SCHEMA,
        pubsub: peer.pubsub,
        replica: { registry, replicaId, peerAddress: address },
        heartbeatMs: peer.heartbeatMs,
        logger,
      });
      await directory.start();
      transport.usePeers(directory, tokens);
      logger.info({ peerAddress: address, replicaId }, 'sessions peer endpoint listening');
      return { port: server.port, address, replicaId };
    },
    tunnelEndpoint,
    userProxy,
    definition: {
      name: 'sessions',
      typeDefs: subgraphTypeDefs('sessions'),
      resolvers: resolvers as SubgraphDefinition<SessionsContext>['resolvers'],
      policy: policyFor('sessions'),
      createContext: (base) => ({ ...base, registry, transport }),
    },
    async close() {
      tunnelEndpoint.close();
      await federation?.placer.stop();
      // Peers stop sending here first (the rows go), then the tunnels close.
      await directory?.close();
      transport.close();
      await peerServer?.close();
      await registry.close();
    },
  };
}

/** The clusters an organization may use, with their GPUs, asked of the clusters subgraph as the system (federation's placement). */
function schedulingClustersOf(clustersUrl: () => string, tokens: InternalTokens) {
  const clusters = createInternalClient({ subgraph: 'clusters', url: clustersUrl, tokens });
  return async (requestId: string, tenantId: string, organizationId: string) =>
    (await clusters.request(asSystem(requestId), FederationClustersDocument, { tenantId, organizationId })).schedulingClusters;
}

const pathOf = (req: IncomingMessage) => new URL(req.url ?? '/', 'http://mariner').pathname;

/**
 * The sessions component's part of the public port: the agents' tunnel endpoint and users'
 * `/v1/sessions/...` (only those paths are routed here).
 */
function publicRoutesOf({ tunnelEndpoint, userProxy }: Sessions): PublicRoutes {
  return {
    handle(req, res) {
      if (!tunnelEndpoint.handles(pathOf(req))) return void userProxy.handle(req, res);
      const { status, message } = tunnelEndpoint.refusePlainRequest();
      sendJson(res, status, { error: { message } });
    },
    handleUpgrade(req, socket, head) {
      if (tunnelEndpoint.handles(pathOf(req))) return void tunnelEndpoint.handleUpgrade(req, socket, head);
      void userProxy.handleUpgrade(req, socket, head);
    },
  };
}

/**
 * The sessions component: the agents' tunnels end here, and with them everything that reaches agents
 * (the registry's `transport`, which inference and jobs use when they run in this process: `mariner up`).
 * Its public routes: the tunnel endpoint and the Kubernetes API and notebook proxies. Under `mariner
 * serve`, MARINER_SESSIONS_PEER_PORT opens the peer endpoint and writes the tunnel directory: the
 * inference and jobs processes (remoteTunnels.ts) and the other sessions replicas send requests for the
 * clusters whose tunnels end here to it (peers.ts).
 */
export const sessionsComponent = defineComponent({
  name: 'sessions',
  subgraphs: ['sessions'],
  // The agents' reports go to jobs and inference (reportPoller.ts): wherever they run, no start order.
  needs: { database: true, pubsub: true, clusterAccess: true, gateway: true, subgraphs: ['clusters'], optionalSubgraphs: ['jobs', 'inference', 'audit'] },
  provides: ['tunnels'],
  public: {
    paths: [SESSIONS_PREFIX, TUNNEL_UPGRADE_PATH, TUNNEL_WEBSOCKET_PATH],
    notFound: { error: { message: 'not found: this is the sessions endpoint (/v1/sessions/...)' } },
  },
  migrations: { schema: SESSIONS_SCHEMA, migrations },
  settings: (config) => ({ sessions: config.sessions, host: config.host }),
  async create({ db, pubsub, clusterAccess, gatewayUrl, settings, secretKey, tokens, subgraphUrl, embedded, logger, observers }) {
    // Registration keys and users' credentials are checked on the gateway; the browser session cookie's key is derived from the secret.
    const deliverReports = subgraphDelivery({ tokens, jobsUrl: subgraphUrl.jobs, inferenceUrl: subgraphUrl.inference });
    const audit = subgraphUrl.audit ? sessionAuditTo(subgraphUrl.audit, tokens, logger) : undefined;
    const sessions = createSessions({
      settings: settings.sessions,
      graphqlUrl: gatewayUrl,
      secretKey,
      db,
      clusters: clusterAccess,
      deliverReports,
      federation: { db, schedulingClusters: schedulingClustersOf(subgraphUrl.clusters, tokens) },
      ...(audit ? { audit } : {}),
      logger,
    });
    observers.observeTunnels(sessions.registry);
    // `mariner up` is one process: every tunnel ends in it, so it has no peers.
    const { peerPort, peerAddress, peerHeartbeatMs } = settings.sessions;
    for (const name of ['jobs', 'inference'] as const) {
      if (!subgraphUrl[name])
        logger.warn(`MARINER_SUBGRAPH_${name.toUpperCase()}_URL is not set: the agents' reports for the ${name} component cannot be delivered`);
    }
    if (!embedded && peerPort === undefined) {
      logger.warn("MARINER_SESSIONS_PEER_PORT is not set: the inference and jobs components (and other sessions replicas) cannot reach this replica's tunnels");
    }
    if (!embedded && peerPort !== undefined) {
      try {
        await sessions.enablePeers({ db, pubsub, host: settings.host, port: peerPort, address: peerAddress, heartbeatMs: peerHeartbeatMs });
      } catch (error) {
        await sessions.close();
        throw error;
      }
    }
    return {
      subgraphs: [sessions.definition],
      publicRoutes: publicRoutesOf(sessions),
      tunnels: sessions.transport,
      stop: () => sessions.close(),
      exposed: sessions,
    };
  },
});
