import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import knexFactory from 'knex';
import { startPlatform, type Platform } from '../../bin/platform.js';
import type { OidcVerifier } from '../../gateway/oidc.js';
import { loadConfig, type MarinerConfig } from '../../lib/config.js';
import { randomString } from '../../lib/ids.js';
import { createLogger, silentLogger } from '../../lib/logging.js';

/** The PostgreSQL server tests run against (CI starts it; see .ci/run). */
export const TEST_POSTGRES_URL = process.env['MARINER_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432';

export interface GraphQLResult<T = Record<string, any>> {
  status: number;
  data?: T | null;
  errors?: { message: string; extensions?: { code?: string; [key: string]: unknown }; path?: (string | number)[] }[];
  headers: Headers;
}

export interface CallOptions {
  token?: string | undefined;
  headers?: Record<string, string>;
  operationName?: string;
}

export interface TestPlatform {
  platform: Platform;
  url: string;
  graphqlUrl: string;
  /** The bootstrap admin key (owner of the default organization and project). */
  adminKey: string;
  /** The platform's data dir (the default cluster's registration key is kept there). */
  dataDir: string;
  /** A GraphQL call over HTTP through the gateway. */
  gql<T = Record<string, any>>(query: string, variables?: Record<string, unknown>, options?: CallOptions): Promise<GraphQLResult<T>>;
  /** Like gql, but fails the test on any error and returns data. */
  gqlOk<T = Record<string, any>>(query: string, variables?: Record<string, unknown>, options?: CallOptions): Promise<T>;
  /**
   * Stops the platform as `mariner up` stops on SIGTERM and starts it again on the same port, database
   * and data dir (`platform` is then the new one): a restart mid-work.
   */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export async function graphqlCall<T>(
  url: string,
  query: string,
  variables: Record<string, unknown> | undefined,
  options: CallOptions = {},
): Promise<GraphQLResult<T>> {
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
      ...options.headers,
    },
    body: JSON.stringify({ query, variables, ...(options.operationName ? { operationName: options.operationName } : {}) }),
  });
  const text = await response.text();
  let body: { data?: T | null; errors?: GraphQLResult['errors'] };
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`non-JSON response ${response.status}: ${text.slice(0, 200)}`);
  }
  return { status: response.status, ...body, headers: response.headers };
}

/** A fresh, empty PostgreSQL database for one test file; drop() removes it. */
export async function createTestDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `mariner_test_${randomString(10).toLowerCase()}`;
  const admin = knexFactory({ client: 'pg', connection: `${TEST_POSTGRES_URL}/postgres`, pool: { min: 0, max: 1 } });
  await admin.raw('create database ??', [name]);
  await admin.destroy();
  return {
    url: `${TEST_POSTGRES_URL}/${name}`,
    async drop() {
      const again = knexFactory({ client: 'pg', connection: `${TEST_POSTGRES_URL}/postgres`, pool: { min: 0, max: 1 } });
      await again.raw('drop database if exists ?? with (force)', [name]);
      await again.destroy();
    },
  };
}

/**
 * Starts the whole platform in-process on loopback ports against a fresh PostgreSQL database
 * (or embedded PGlite with `embedded: true`), with a fixed admin key.
 */
/** Settings a test changes: a section (`jobs`, `subscriptions`, ...) may be given in part, the rest keeps its defaults. */
export type TestConfig = {
  [K in keyof MarinerConfig]?: MarinerConfig[K] extends readonly unknown[]
    ? MarinerConfig[K]
    : MarinerConfig[K] extends object
      ? Partial<MarinerConfig[K]>
      : MarinerConfig[K];
};

export async function startTestPlatform(
  options: { oidc?: OidcVerifier | null; config?: TestConfig; embedded?: boolean; defaultCluster?: boolean; demoModel?: boolean } = {},
): Promise<TestPlatform> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'mariner-test-'));
  const database = options.embedded ? null : await createTestDatabase();
  const adminKey = `sk-${randomString(48)}`;
  const config = loadConfig(
    {},
    {
      port: 0,
      dataDir,
      databaseUrl: database?.url,
      adminApiKey: adminKey,
      logLevel: 'silent',
      // The filesystem store under this test's data dir (loadConfig derives it from the environment).
      objectStore: { driver: 'filesystem', dir: path.join(dataDir, 'objects') },
    },
  );
  // One level deep: `{ jobs: { dispatchIntervalMs: 200 } }` keeps the other job settings. The object
  // store is replaced whole (its drivers have different fields).
  for (const [key, value] of Object.entries(options.config ?? {})) {
    const current = (config as unknown as Record<string, unknown>)[key];
    const partial = key !== 'objectStore' && value && typeof value === 'object' && !Array.isArray(value) && current && typeof current === 'object';
    (config as unknown as Record<string, unknown>)[key] = partial ? { ...current, ...value } : value;
  }
  // Most tests need no cluster: the embedded agent of `mariner up` only where a test asks for it.
  config.clusters = { ...config.clusters, defaultCluster: options.defaultCluster ?? false };
  const start = () =>
    startPlatform(config, {
      logger: process.env['MARINER_TEST_LOG'] ? createLogger(process.env['MARINER_TEST_LOG']) : silentLogger(),
      ...(options.oidc !== undefined ? { oidc: options.oidc } : {}),
      ...(options.demoModel ? { demoModel: true } : {}),
    });
  const platform = await start();
  const graphqlUrl = `${platform.url}/graphql`;
  const gql = <T>(query: string, variables?: Record<string, unknown>, callOptions: CallOptions = {}) =>
    graphqlCall<T>(graphqlUrl, query, variables, { token: adminKey, ...callOptions });
  const t: TestPlatform = {
    platform,
    url: platform.url,
    graphqlUrl,
    adminKey,
    dataDir,
    gql,
    async gqlOk<T>(query: string, variables?: Record<string, unknown>, callOptions: CallOptions = {}) {
      const result = await gql<T>(query, variables, callOptions);
      if (result.errors?.length || !result.data) {
        throw new Error(`GraphQL errors (HTTP ${result.status}): ${JSON.stringify(result.errors)}`);
      }
      return result.data;
    },
    async restart() {
      await t.platform.close();
      config.port = Number(new URL(t.url).port);
      t.platform = await start();
    },
    async close() {
      await t.platform.close();
      await database?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return t;
}
