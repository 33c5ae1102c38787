import type { AnyComponent } from '../lib/component.js';
import { ConfigError, loadConfig, readJsonSetting, type MarinerConfig } from '../lib/config.js';
import { SUBGRAPH_NAMES, type SubgraphName } from '../schema/subgraphs.js';
import { reachesRemoteTunnels, SERVED, type ServedName } from './components.js';

/**
 * The settings of `mariner serve <component>` (one component per process, as the Helm chart runs them),
 * on top of lib/config's: where the other components are, and the operations port. Like every setting
 * they come from the environment or from the JSON file named by MARINER_CONFIG_FILE (the chart mounts
 * one from a ConfigMap); the environment wins, so a Secret mapped to an env var overrides the file.
 */

/** What `mariner serve` accepts: the registry's components (bin/components.ts). */
export type ComponentName = ServedName;
export const COMPONENT_NAMES: readonly ComponentName[] = [...SERVED.keys()];

/** The subgraphs each `mariner serve` process serves, in port order. */
export const COMPONENT_SUBGRAPHS = {} as Record<ComponentName, readonly SubgraphName[]>;
for (const [name, components] of SERVED) COMPONENT_SUBGRAPHS[name] = components.flatMap((c) => c.subgraphs as readonly SubgraphName[]);

/**
 * Whether a process opens the database: one of its components has tables (or events across replicas),
 * or reaches the agents' tunnels in the sessions process (whose tunnel directory is a table).
 */
export function usesDatabase(components: readonly AnyComponent[]): boolean {
  return components.some((c) => c.needs.database || c.needs.pubsub) || reachesRemoteTunnels(components);
}

/** The subgraphs a process's components call that it does not serve itself: their URLs are required. */
export function subgraphsCalled(components: readonly AnyComponent[]): SubgraphName[] {
  const served = new Set(components.flatMap((c) => c.subgraphs));
  const called = new Set(components.flatMap((c) => c.needs.subgraphs ?? []));
  return SUBGRAPH_NAMES.filter((name) => called.has(name) && !served.has(name));
}

/** Whether a process needs MARINER_GATEWAY_URL: a component calls the gateway, which runs elsewhere. */
function callsRemoteGateway(components: readonly AnyComponent[]): boolean {
  return components.some((c) => c.needs.gateway) && !components.some((c) => c.provides?.includes('gateway'));
}

export interface ServeSettings {
  component: ComponentName;
  /** The registry's components this process runs: the one named. */
  components: readonly AnyComponent[];
  /** The subgraphs this process serves: on MARINER_PORT (one up with a public port: sessions). */
  subgraphs: readonly SubgraphName[];
  /** Whether this component opens the database (readiness then includes it). */
  usesDatabase: boolean;
  /** /healthz, /readyz and /metrics, apart from the traffic port so probes never queue behind requests. */
  opsPort: number;
  /** MARINER_SUBGRAPH_<NAME>_URL: where each subgraph this component calls runs. */
  subgraphUrls: Partial<Record<SubgraphName, string>>;
  /** MARINER_GATEWAY_URL: the gateway's GraphQL URL (sessions checks registration keys and users there). */
  gatewayUrl: string | undefined;
  /**
   * MARINER_SHUTDOWN_DELAY_MS: on SIGTERM, how long the component keeps serving while /readyz already
   * says `stopping`, so load balancers stop sending it requests before it stops accepting them.
   */
  shutdownDelayMs: number;
  /** MARINER_DRAIN_TIMEOUT_MS: then, how long requests in flight may take to finish before they are cut. */
  drainTimeoutMs: number;
}

export function subgraphUrlSetting(name: SubgraphName): string {
  return `MARINER_SUBGRAPH_${name.toUpperCase()}_URL`;
}

type Env = Record<string, string | undefined>;

/** The JSON file's settings as environment strings; only flat names with scalar values. */
function readConfigFile(file: string): Env {
  const json = readJsonSetting('MARINER_CONFIG_FILE', file);
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new ConfigError(`MARINER_CONFIG_FILE (${file}) must hold a JSON object of settings, such as {"MARINER_LOG_LEVEL": "info"}`);
  }
  const out: Env = {};
  for (const [name, value] of Object.entries(json)) {
    if (!/^[A-Z][A-Z0-9_]*$/.test(name))
      throw new ConfigError(`MARINER_CONFIG_FILE (${file}): "${name}" is not a setting name (upper case, like MARINER_PORT)`);
    if (value === null) continue;
    if (!['string', 'number', 'boolean'].includes(typeof value)) {
      throw new ConfigError(`MARINER_CONFIG_FILE (${file}): ${name} must be a string, number or boolean`);
    }
    out[name] = String(value);
  }
  return out;
}

/** The environment, recording which names were read, so a file's misspelt setting is caught. */
function recordingReads(env: Env, reads: Set<string>): Env {
  return new Proxy(env, {
    get(target, key) {
      if (typeof key === 'string') reads.add(key);
      return Reflect.get(target, key);
    },
  });
}

function intSetting(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) throw new ConfigError(`${name} must be an integer between ${min} and ${max}, got "${raw}"`);
  return value;
}

function urlSetting(env: Env, name: string): string | undefined {
  const raw = env[name]?.trim();
  if (!raw) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`${name} must be an http(s) URL, got "${raw}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError(`${name} must be an http(s) URL, got "${raw}"`);
  return raw;
}

/**
 * MARINER_DRAIN_TIMEOUT_MS: on SIGTERM, how long requests in flight (streamed answers included) may take
 * to finish once no new connection is accepted; `mariner serve` and `mariner up` alike.
 */
export function drainTimeoutSetting(env: Env = process.env): number {
  return intSetting(env, 'MARINER_DRAIN_TIMEOUT_MS', 20_000, 0, 600_000);
}

export function isComponentName(name: string | undefined): name is ComponentName {
  return name !== undefined && SERVED.has(name as ComponentName);
}

/**
 * Reads and checks the configuration of one component: every problem a start would otherwise hit
 * later (a missing database, a subgraph URL, the shared token secret) is a ConfigError naming the setting.
 */
export function loadServeConfig(component: ComponentName, processEnv: Env = process.env): { config: MarinerConfig; serve: ServeSettings } {
  const file = processEnv['MARINER_CONFIG_FILE']?.trim();
  const fromFile = file ? readConfigFile(file) : {};
  const reads = new Set<string>();
  const env = recordingReads({ ...fromFile, ...processEnv }, reads);

  // In a pod the component must be reachable from other pods: all interfaces unless told otherwise.
  const config = loadConfig(env, env['MARINER_HOST'] ? {} : { host: '0.0.0.0' });
  const components = SERVED.get(component)!;
  const withDatabase = usesDatabase(components);
  const subgraphUrls: Partial<Record<SubgraphName, string>> = {};
  for (const name of SUBGRAPH_NAMES) {
    const url = urlSetting(env, subgraphUrlSetting(name));
    if (url) subgraphUrls[name] = url;
  }
  const gatewayUrlRaw = urlSetting(env, 'MARINER_GATEWAY_URL');
  const opsPort = intSetting(env, 'MARINER_OPS_PORT', 9090, 0, 65535);
  const shutdownDelayMs = intSetting(env, 'MARINER_SHUTDOWN_DELAY_MS', 5_000, 0, 120_000);
  const drainTimeoutMs = drainTimeoutSetting(env);

  const unknown = Object.keys(fromFile).filter((name) => !reads.has(name));
  if (unknown.length > 0) {
    throw new ConfigError(`MARINER_CONFIG_FILE (${file}): unknown or unused setting${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}`);
  }
  const where = `mariner serve ${component}`;
  if (!config.internalTokenSecret) {
    // Generated into a local data dir by `mariner up`; separate processes must share one.
    throw new ConfigError(`MARINER_INTERNAL_TOKEN_SECRET is required for ${where}: every component must share it (at least 32 characters, from a Secret)`);
  }
  if (config.internalTokenSecret.length < 32) throw new ConfigError('MARINER_INTERNAL_TOKEN_SECRET must be at least 32 characters');
  if (withDatabase && !config.databaseUrl) {
    throw new ConfigError(
      `DATABASE_URL is required for ${where}: components in separate processes share one PostgreSQL (the embedded PGlite serves one process only)`,
    );
  }
  const missing = subgraphsCalled(components).filter((name) => !subgraphUrls[name]);
  if (missing.length > 0) {
    throw new ConfigError(
      `${where} needs ${missing.map(subgraphUrlSetting).join(', ')} (the subgraph's GraphQL URL, e.g. http://mariner-${missing[0]}:8080/graphql)`,
    );
  }
  if (callsRemoteGateway(components) && !gatewayUrlRaw) {
    // Sessions: agents' registration keys and users' credentials are checked on the gateway.
    const callers = components.filter((c) => c.needs.gateway).map((c) => c.name);
    throw new ConfigError(
      `MARINER_GATEWAY_URL is required for ${where}: ${callers.join(', ')} call${callers.length > 1 ? '' : 's'} the gateway (e.g. http://mariner-gateway:8080/graphql)`,
    );
  }
  return {
    config,
    serve: {
      component,
      components,
      subgraphs: COMPONENT_SUBGRAPHS[component],
      usesDatabase: withDatabase,
      opsPort,
      subgraphUrls,
      gatewayUrl: gatewayUrlRaw && new URL(gatewayUrlRaw).pathname === '/' ? new URL('/graphql', gatewayUrlRaw).toString() : gatewayUrlRaw,
      shutdownDelayMs,
      drainTimeoutMs,
    },
  };
}
