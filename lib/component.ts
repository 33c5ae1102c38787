import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AgentTunnels } from './agentContract.js';
import type { ApiCallSink } from './apiCallRecord.js';
import type { ClusterAccessDirectory } from './clusterAccess.js';
import type { ComponentObservers } from './componentObservers.js';
import type { MarinerConfig } from './config.js';
import type { Database, Migration } from './db.js';
import type { InternalTokens } from './identity.js';
import type { Logger } from './logging.js';
import type { ObjectStore } from './objectStore/index.js';
import type { InferencePlaneServer } from './inferencePlane.js';
import type { PubSub } from './pubsub.js';
import type { SubgraphDefinition } from './subgraphServer.js';

/** How work reaches a cluster's agent (lib/agentContract.ts). */
export type { AgentTunnels } from './agentContract.js';

/**
 * A component of the platform (DESIGN §2): what one manager's `index.ts` exports so that `mariner up`
 * (every component in one process) and `mariner serve <component>` (one per process, as the chart runs
 * them) assemble it the same way. The registry (bin/components.ts) lists them; a host (bin/componentHost.ts)
 * gives each what it declares it needs, runs its migrations, calls `create`, and serves what it returns.
 */

/**
 * What a component needs from the process that hosts it. The host provides exactly these (typed in
 * ComponentDeps), and `mariner serve` refuses to start without the settings they take.
 */
export interface ComponentNeeds {
  /** Its own tables: the process opens the database (DATABASE_URL) and runs `migrations` first. */
  database?: boolean;
  /** File bytes and model weights (lib/objectStore). */
  objectStore?: boolean;
  /** Events across replicas (lib/pubsub), on the process's database. */
  pubsub?: boolean;
  /** Whom each cluster serves (lib/clusterAccess): one cache per process, shared; asks the clusters subgraph. */
  clusterAccess?: boolean;
  /**
   * The agents' tunnels: those of the component they end in (sessions) when it runs in the same process
   * (`mariner up`), else reached through its peer endpoint, found in its tunnel directory (the process
   * then opens the database and pub/sub: bin/componentHost.ts).
   */
  tunnels?: boolean;
  /** The gateway's GraphQL URL: from the process's own gateway, else MARINER_GATEWAY_URL. */
  gateway?: boolean;
  /**
   * The inference data plane of the process, when a component of it provides one (null otherwise: the
   * caller goes over HTTP). Sets no start order: the gateway, which uses it, starts after every subgraph.
   */
  inferencePlane?: boolean;
  /**
   * Where the gateway writes its API call records: the store of the component of the process that provides
   * it (null otherwise: written over HTTP). Sets no start order, as for the inference data plane.
   */
  apiCallSink?: boolean;
  /** Subgraphs it calls: started before it under `mariner up`; MARINER_SUBGRAPH_<NAME>_URL required under `mariner serve`. */
  subgraphs?: readonly string[];
  /** Subgraphs it calls when they are there (a feature is off otherwise); no start order. */
  optionalSubgraphs?: readonly string[];
}

type Names<T> = T extends readonly (infer Name extends string)[] ? Name : never;
type When<Need, T> = Need extends true ? T : unknown;

/** The URL getters of the subgraphs a component calls; read them when calling (some start later). */
export type SubgraphUrls<N extends ComponentNeeds> = { readonly [Name in Names<N['subgraphs']>]: () => string } & {
  readonly [Name in Names<N['optionalSubgraphs']>]?: () => string;
};

/** What `create` receives: always the base, and what the component declared it needs. */
export type ComponentDeps<N extends ComponentNeeds, Settings> = {
  /** Its section of lib/config (the definition's `settings`). */
  settings: Settings;
  logger: Logger;
  /** Mints the internal tokens for calls to other subgraphs. */
  tokens: InternalTokens;
  /** The platform's internal secret, from which component keys are derived (session cookies, sealed secrets). */
  secretKey: string;
  /**
   * True under `mariner up`: one process with every component, its output read by the person at the
   * terminal. False under `mariner serve`, whose output is a pod's log.
   */
  embedded: boolean;
  observers: ComponentObservers;
  subgraphUrl: SubgraphUrls<N>;
} & When<N['database'], { db: Database }> &
  When<N['objectStore'], { objectStore: ObjectStore }> &
  When<N['pubsub'], { pubsub: PubSub }> &
  When<N['clusterAccess'], { clusterAccess: ClusterAccessDirectory }> &
  When<N['tunnels'], { tunnels: AgentTunnels }> &
  When<N['gateway'], { gatewayUrl: () => string }> &
  When<N['inferencePlane'], { inferencePlane: InferencePlaneServer | null }> &
  When<N['apiCallSink'], { apiCallSink: ApiCallSink | null }>;

/** A subgraph a component returns, served by the host on its own port (lib/subgraphServer.ts); each has its own context. */
export type ComponentSubgraph = SubgraphDefinition<any>;

/** A component's part of the process's public port (the definition's `public.paths` lead here). */
export interface PublicRoutes {
  handle(req: IncomingMessage, res: ServerResponse): void;
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
}

/** What `create` returns: what the host serves and stops, and what it may use. */
export interface CreatedComponent<Exposed> {
  /** Its subgraphs, in the order of the definition's `subgraphs` (each on the next port under `mariner serve`). */
  subgraphs: readonly ComponentSubgraph[];
  /** Its routes on the public port, when the definition has `public`. */
  publicRoutes?: PublicRoutes;
  /** The agents' tunnels, when the definition provides them. */
  tunnels?: AgentTunnels;
  /** The inference data plane, when the definition provides it (lib/inferencePlane.ts). */
  inferencePlane?: InferencePlaneServer;
  /** The store of API call records, called in process, when the definition provides it (lib/apiCallRecord.ts). */
  apiCallSink?: ApiCallSink;
  /**
   * Stops its work: after the process drained its requests, before the servers close (upgraded
   * connections, graphql-ws and tunnels, keep a server open until their owner ends them); components
   * stop in reverse start order, so the ones that call others stop first.
   */
  stop?(): Promise<void>;
  /** What `mariner up` uses besides (a store, the bootstrap result); tests reach it through the platform. */
  exposed?: Exposed;
}

export interface ComponentDefinition<N extends ComponentNeeds = ComponentNeeds, Settings = unknown, Exposed = unknown, Name extends string = string> {
  /** `mariner serve <name>`, the chart's Deployment. */
  name: Name;
  /** The subgraphs it serves (schema/subgraphs.ts names). */
  subgraphs: readonly string[];
  needs: N;
  /**
   * What it offers the other components of its process: the agents' tunnels, the gateway's GraphQL, the
   * inference data plane, the store of API call records.
   */
  provides?: readonly ('tunnels' | 'gateway' | 'inferencePlane' | 'apiCallSink')[];
  /**
   * Its paths on the public port (exact, or a prefix when ending in `/`; the longest match wins) and the
   * 404 body of a process whose first public component it is. With it, its subgraphs move one port up.
   */
  public?: { paths: readonly string[]; notFound: unknown };
  /** Its tables' migrations, run by the host in `schema` before `create`. */
  migrations?: { schema: string; migrations: readonly Migration[] };
  /** What /readyz says while it starts (default: `running migrations` with a database, else `starting`). */
  startingStatus?: string;
  /** Its section of lib/config. */
  settings(config: MarinerConfig): Settings;
  create(deps: ComponentDeps<N, Settings>): Promise<CreatedComponent<Exposed>>;
}

/** Any definition, as the registry and the hosts hold them (each has its own needs, settings and exposed value). */
export type AnyComponent = ComponentDefinition<any, any, any, string>;

/** What a definition's `create` exposes. */
export type ExposedBy<C> = C extends { create(deps: never): Promise<CreatedComponent<infer Exposed>> } ? Exposed : never;

/**
 * Declares a component; `needs` is read literally, so `create` gets exactly the dependencies declared
 * (`needs: { database: true }` gives it `db`) and the URL getters of the subgraphs named.
 */
export function defineComponent<const Name extends string, const N extends ComponentNeeds, Settings, Exposed = undefined>(
  definition: ComponentDefinition<N, Settings, Exposed, Name>,
): ComponentDefinition<N, Settings, Exposed, Name> {
  return definition;
}
