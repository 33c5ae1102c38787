import type { IncomingMessage, RequestListener, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { ClusterAccessDirectory } from '../lib/clusterAccess.js';
import type { ApiCallSink } from '../lib/apiCallRecord.js';
import type { AgentTunnels, AnyComponent, ExposedBy, PublicRoutes } from '../lib/component.js';
import type { ComponentObservers } from '../lib/componentObservers.js';
import type { MarinerConfig } from '../lib/config.js';
import { migrate, type Database } from '../lib/db.js';
import { sendJson } from '../lib/http.js';
import type { InternalTokens } from '../lib/identity.js';
import type { Logger } from '../lib/logging.js';
import { createObjectStore, type ObjectStore } from '../lib/objectStore/index.js';
import type { InferencePlaneServer } from '../lib/inferencePlane.js';
import { createPubSub, type PubSub } from '../lib/pubsub.js';
import { trackRequests, type RequestTracker } from '../lib/requestTracker.js';
import { startSubgraph, type RunningSubgraph } from '../lib/subgraphServer.js';
import type { SubgraphName } from '../schema/subgraphs.js';
import { RemoteAgentTunnels, SESSIONS_SCHEMA } from '../subgraphs/sessions/index.js';
import { reachesRemoteTunnels, startOrder } from './components.js';
import { closeServer, createPublicServer, listen, refuseUpgrade, urlHost } from './httpServers.js';

/**
 * Runs components of the registry in one process: `mariner up` (all of them) and `mariner serve`
 * (one) alike. It gives each component what its
 * definition says it needs, runs its migrations, calls `create`, serves its subgraphs each on a port of
 * its own and its public routes on the public port, and stops them in reverse start order.
 */

export interface ComponentHostOptions {
  config: MarinerConfig;
  components: readonly AnyComponent[];
  /** The process's database, when a component needs it (the caller opens and closes it). */
  db: Database | undefined;
  tokens: InternalTokens;
  /** The internal token secret. */
  secretKey: string;
  logger: Logger;
  observers: ComponentObservers;
  /** `mariner up`: every component in this process (ComponentDeps.embedded). */
  embedded: boolean;
  /** Where each subgraph gets its port, on `subgraphHost` (0: any free one). */
  subgraphHost: string;
  subgraphPort(subgraph: string): number;
  /** Subgraphs served by other processes (MARINER_SUBGRAPH_<NAME>_URL). */
  externalSubgraphUrls?: Partial<Record<SubgraphName, string>>;
  /** The gateway elsewhere (MARINER_GATEWAY_URL), for a process without one. */
  externalGatewayUrl?: string | undefined;
  /** Told what the process is doing while components start (/readyz says it). */
  onStatus?(status: string): void;
}

/** Routes of the host itself on the public port (`mariner up`: /healthz and /readyz). */
export interface HostRoutes {
  paths: readonly string[];
  handle(req: IncomingMessage, res: ServerResponse): void;
}

interface Started {
  component: AnyComponent;
  subgraphs: RunningSubgraph[];
  publicRoutes: PublicRoutes | undefined;
  stop: (() => Promise<void>) | undefined;
  exposed: unknown;
  stopped: boolean;
}

export class ComponentHost {
  /** Each subgraph served by this process, at the URL it is reached at (a wildcard address on loopback). */
  readonly subgraphUrls: Partial<Record<SubgraphName, string>> = {};
  private readonly started: Started[] = [];
  private readonly order: AnyComponent[];
  private readonly log: Logger;
  private objectStoreOpening: Promise<ObjectStore> | undefined;
  private pubsubOpening: Promise<PubSub> | undefined;
  private clusterAccess: ClusterAccessDirectory | undefined;
  private tunnels: AgentTunnels | undefined;
  private remoteTunnelsOpening: Promise<RemoteAgentTunnels> | undefined;
  private inferencePlane: InferencePlaneServer | undefined;
  private apiCallSink: ApiCallSink | undefined;
  private gatewayUrl = '';
  private publicServer: { server: Server; requests: RequestTracker } | undefined;
  private loopbackServer: Server | undefined;

  constructor(private readonly options: ComponentHostOptions) {
    this.order = startOrder(options.components);
    this.log = options.logger;
  }

  /** Starts every component, in start order; on failure, what started is stopped by `close`. */
  async start(): Promise<void> {
    for (const component of this.order) await this.startOne(component);
  }

  private async startOne(component: AnyComponent): Promise<void> {
    const { options } = this;
    const { needs } = component;
    options.onStatus?.(component.startingStatus ?? (options.db ? 'running migrations' : 'starting'));
    if (component.migrations) await migrate(this.database(component.name).knex, component.migrations.schema, [...component.migrations.migrations]);
    const deps: Record<string, unknown> = {
      settings: component.settings(options.config),
      logger: this.log,
      tokens: options.tokens,
      secretKey: options.secretKey,
      embedded: options.embedded,
      observers: options.observers,
      subgraphUrl: this.urlGetters(component),
    };
    if (needs.database) deps['db'] = this.database(component.name);
    if (needs.objectStore) deps['objectStore'] = await this.objectStore();
    if (needs.pubsub) deps['pubsub'] = await this.pubsub();
    if (needs.clusterAccess)
      deps['clusterAccess'] = this.clusterAccess ??= new ClusterAccessDirectory({ clustersUrl: () => this.urlOf('clusters'), tokens: options.tokens });
    if (needs.tunnels)
      deps['tunnels'] = reachesRemoteTunnels(options.components)
        ? await this.remoteTunnels()
        : (this.tunnels ?? fail(`${component.name} needs the agents' tunnels, which start after it`));
    if (needs.gateway) deps['gatewayUrl'] = () => this.gatewayUrl || options.externalGatewayUrl || '';
    if (needs.inferencePlane) deps['inferencePlane'] = this.inferencePlane ?? null;
    if (needs.apiCallSink) deps['apiCallSink'] = this.apiCallSink ?? null;
    const created = await component.create(deps as never);
    const started: Started = { component, subgraphs: [], publicRoutes: created.publicRoutes, stop: created.stop, exposed: created.exposed, stopped: false };
    this.started.push(started);
    if (component.provides?.includes('tunnels')) this.tunnels = created.tunnels ?? fail(`${component.name} provides the tunnels but returned none`);
    if (component.provides?.includes('inferencePlane'))
      this.inferencePlane = created.inferencePlane ?? fail(`${component.name} provides the inference data plane but returned none`);
    if (component.provides?.includes('apiCallSink'))
      this.apiCallSink = created.apiCallSink ?? fail(`${component.name} provides the store of API call records but returned none`);
    if (component.public && !created.publicRoutes) throw new Error(`${component.name} has public paths but returned no routes`);
    for (const definition of created.subgraphs) {
      const plugin = options.observers.requestPlugin(definition.name);
      const running = await startSubgraph(definition, {
        host: options.subgraphHost,
        port: options.subgraphPort(definition.name),
        tokens: options.tokens,
        logger: this.log,
        maxBodyBytes: options.config.limits.maxBodyBytes,
        ...(plugin ? { plugins: [plugin] } : {}),
      });
      started.subgraphs.push(running);
      this.subgraphUrls[definition.name as SubgraphName] = `http://${urlHost(options.subgraphHost, Number(new URL(running.url).port))}/graphql`;
    }
  }

  private database(who: string): Database {
    return this.options.db ?? fail(`${who} needs the database, which this process has not opened`);
  }

  private objectStore(): Promise<ObjectStore> {
    return (this.objectStoreOpening ??= createObjectStore(this.options.config.objectStore, { logger: this.log }));
  }

  private pubsub(): Promise<PubSub> {
    return (this.pubsubOpening ??= createPubSub(this.database('pub/sub'), this.options.config.databaseUrl));
  }

  /**
   * The agents' tunnels for a process without the sessions component (`mariner serve inference`, `jobs`):
   * its tunnel directory, in the database, says which sessions replica holds each cluster, and requests
   * go to that replica's peer endpoint (subgraphs/sessions/remoteTunnels.ts). One per process, shared.
   */
  private remoteTunnels(): Promise<RemoteAgentTunnels> {
    return (this.remoteTunnelsOpening ??= (async () =>
      RemoteAgentTunnels.start({
        knex: this.database("the agents' tunnels").knex,
        schema: SESSIONS_SCHEMA,
        pubsub: await this.pubsub(),
        secretKey: this.options.secretKey,
        heartbeatMs: this.options.config.sessions.peerHeartbeatMs,
        logger: this.log.child({ component: 'tunnels' }),
      }))());
  }

  /** The URL of a subgraph: served here, else where the settings say; read when called (some start later). */
  private urlOf(name: string): string {
    const url = this.subgraphUrls[name as SubgraphName] ?? this.options.externalSubgraphUrls?.[name as SubgraphName];
    if (!url) throw new Error(`the ${name} subgraph is neither served in this process (yet) nor given by its URL setting`);
    return url;
  }

  private urlGetters(component: AnyComponent): Record<string, () => string> {
    const getters: Record<string, () => string> = {};
    for (const name of component.needs.subgraphs ?? []) getters[name] = () => this.urlOf(name);
    const servedHere = (name: string) => this.options.components.some((c) => c.subgraphs.includes(name));
    for (const name of component.needs.optionalSubgraphs ?? []) {
      if (servedHere(name) || this.options.externalSubgraphUrls?.[name as SubgraphName]) getters[name] = () => this.urlOf(name);
    }
    return getters;
  }

  /** What a component's `create` exposed (`mariner up`: the stores it needs, the bootstrap result). */
  exposed<C extends AnyComponent>(component: C): ExposedBy<C> {
    const found = this.started.find((s) => s.component === component) ?? fail(`${component.name} is not started in this process`);
    return found.exposed as ExposedBy<C>;
  }

  /** The object store of this process (opened on first use). */
  sharedObjectStore(): Promise<ObjectStore> {
    return this.objectStore();
  }

  /** Whether a component of this process has routes on the public port. */
  get hasPublicRoutes(): boolean {
    return this.options.components.some((c) => c.public);
  }

  /**
   * Serves the components' public routes (and the host's own) on `port`: each request goes to the
   * longest of the paths that matches it, exact or (ending in `/`) a prefix — as the chart's Ingress
   * routes by the longest prefix. With the gateway in this process, the components reach its GraphQL on
   * a loopback port of its own, which stays open while the public port drains: a request in flight may
   * still need GraphQL (the REST layer's, a tunnel's registration check). Returns the public port.
   */
  async listenPublic(host: string, port: number, extra?: HostRoutes): Promise<number> {
    const routes: { path: string; handle: RequestListener; upgrade?: PublicRoutes['handleUpgrade'] }[] = [];
    for (const { component, publicRoutes } of this.started) {
      if (!publicRoutes || !component.public) continue;
      for (const path of component.public.paths)
        routes.push({
          path,
          handle: (req, res) => publicRoutes.handle(req, res),
          upgrade: (req, socket, head) => publicRoutes.handleUpgrade(req, socket, head),
        });
    }
    for (const path of extra?.paths ?? []) routes.push({ path, handle: (req, res) => extra!.handle(req, res) });
    const notFound = this.options.components.find((c) => c.public)?.public?.notFound ?? { error: 'not found' };
    const routeOf = (req: IncomingMessage) => {
      const pathname = new URL(req.url ?? '/', 'http://mariner').pathname;
      let best: (typeof routes)[number] | undefined;
      for (const route of routes) {
        const matches = route.path.endsWith('/') ? pathname.startsWith(route.path) : pathname === route.path;
        if (matches && (!best || route.path.length > best.path.length)) best = route;
      }
      return best;
    };
    const handle: RequestListener = (req, res) => {
      const route = routeOf(req);
      if (route) return route.handle(req, res);
      sendJson(res, 404, notFound);
    };
    const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const route = routeOf(req);
      if (route?.upgrade) return route.upgrade(req, socket, head);
      refuseUpgrade(socket);
    };
    if (this.options.components.some((c) => c.provides?.includes('gateway'))) {
      this.loopbackServer = createPublicServer(handle, upgrade);
      this.gatewayUrl = `http://127.0.0.1:${await listen(this.loopbackServer, 0, '127.0.0.1')}/graphql`;
    }
    const server = createPublicServer(handle, upgrade);
    this.publicServer = { server, requests: trackRequests(server) };
    return listen(server, port, host);
  }

  /** Requests being answered now, on the public port and the subgraphs'. */
  inFlight(): number {
    const subgraphs = this.started.flatMap((s) => s.subgraphs).reduce((sum, s) => sum + s.inFlight(), 0);
    return subgraphs + (this.publicServer?.requests.inFlight() ?? 0);
  }

  /**
   * The graceful part of a stop: the public port (and with `subgraphs`, every subgraph's) stops
   * accepting connections and requests in flight get up to `timeoutMs`. False: some were still running.
   */
  async drain(timeoutMs: number, which: { subgraphs: boolean }): Promise<boolean> {
    const drains = [this.publicServer?.requests.drain(timeoutMs) ?? Promise.resolve(true)];
    if (which.subgraphs) drains.push(...this.started.flatMap((s) => s.subgraphs).map((s) => s.drain(timeoutMs)));
    return !(await Promise.all(drains)).includes(false);
  }

  /**
   * Stops the named components (default: every one still running), in reverse start order: the ones
   * that call others first (the gateway before the subgraphs, inference before the tunnels it uses).
   */
  async stop(names?: readonly string[]): Promise<void> {
    for (const started of [...this.started].reverse()) {
      if (started.stopped || (names && !names.includes(started.component.name))) continue;
      started.stopped = true;
      await started.stop?.().catch((error: unknown) => this.log.warn({ err: error, component: started.component.name }, 'stop failed'));
    }
  }

  /**
   * Stops what still runs, then closes the servers (public, loopback, subgraphs) and what the process
   * opened for its components (pub/sub, object store). The database is the caller's, closed after.
   */
  async close(): Promise<void> {
    await this.stop();
    const attempt = (what: string, close: () => Promise<void>) => close().catch((error: unknown) => this.log.warn({ err: error, what }, 'stop failed'));
    if (this.publicServer) await attempt('public server', () => closeServer(this.publicServer!.server));
    if (this.loopbackServer) await attempt('loopback server', () => closeServer(this.loopbackServer!));
    await Promise.all(this.started.flatMap((s) => s.subgraphs).map((s) => attempt(`${s.name} subgraph`, () => s.close())));
    if (this.remoteTunnelsOpening) await attempt('tunnels', async () => (await this.remoteTunnelsOpening!).close());
    if (this.pubsubOpening) await attempt('pubsub', async () => (await this.pubsubOpening!).close());
    if (this.objectStoreOpening) await attempt('object store', async () => (await this.objectStoreOpening!).close());
  }
}

function fail(message: string): never {
  throw new Error(message);
}
