import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import knexFactory, { type Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMPONENTS } from '../bin/components.js';
import { migrateOnly } from '../bin/serve.js';
import { loadConfig } from '../lib/config.js';
import { randomString } from '../lib/ids.js';
import { silentLogger } from '../lib/logging.js';
import { ClusterStore } from '../subgraphs/clusters/index.js';
import { createTestDatabase } from './support/platform.js';
import { startServeComponent, type ServedDeployment } from './support/serveComponent.js';

/**
 * What the chart's first install relies on in the code (issue 23), on the real PostgreSQL: the hook Job's
 * `mariner serve --migrate-only` creates every component's tables once, and `mariner serve clusters`
 * registers the default cluster from MARINER_DEFAULT_CLUSTER_KEY (the Secret the agent also reads), the
 * same at every start and on every replica.
 */

describe('a chart install on the real PostgreSQL', () => {
  let database: { url: string; drop(): Promise<void> };
  let knex: Knex;
  let deployment: ServedDeployment;

  beforeAll(async () => {
    database = await createTestDatabase();
    knex = knexFactory({ client: 'pg', connection: database.url, pool: { min: 0, max: 2 } });
    deployment = {
      secret: randomString(48),
      dataDir: mkdtempSync(path.join(tmpdir(), 'mariner-helm-install-')),
      databaseUrl: database.url,
      adminKey: `sk-${randomString(48)}`,
      running: [],
    };
  }, 60_000);
  afterAll(async () => {
    for (const running of deployment?.running.reverse() ?? []) await running.close();
    await knex?.destroy();
    await database?.drop();
    if (deployment) rmSync(deployment.dataDir, { recursive: true, force: true });
  });

  it('--migrate-only applies every component migration, and a second run (the next upgrade) finds nothing to do', async () => {
    const config = loadConfig({ DATABASE_URL: database.url, MARINER_DATA_DIR: deployment.dataDir });
    await migrateOnly(config, silentLogger());
    const applied = async () => {
      const counts: Record<string, number> = {};
      for (const component of COMPONENTS) {
        if (!component.migrations) continue;
        const rows = await knex.withSchema(component.migrations.schema).table('mariner_migrations').select('id');
        counts[component.migrations.schema] = rows.length;
        expect(rows.length, component.name).toBe(component.migrations.migrations.length);
      }
      return counts;
    };
    const first = await applied();
    expect(Object.keys(first).length).toBeGreaterThan(5);
    await migrateOnly(config, silentLogger());
    expect(await applied()).toEqual(first);
    await expect(migrateOnly(loadConfig({}), silentLogger())).rejects.toThrow('DATABASE_URL is required for mariner serve --migrate-only');
  }, 60_000);

  it('mariner serve clusters registers the default cluster with MARINER_DEFAULT_CLUSTER_KEY: one cluster, that key, at every start and with two replicas', async () => {
    const key = `clusterkey-${randomString(48)}`;
    const env = { MARINER_DEFAULT_CLUSTER_KEY: key, MARINER_DEFAULT_CLUSTER_NAME: 'trial' };
    const first = await startServeComponent(deployment, 'clusters', env);
    await startServeComponent(deployment, 'clusters', env);
    const store = new ClusterStore(knex);
    const cluster = await store.clusterByKey(key);
    expect(cluster).toMatchObject({ name: 'trial', is_default: true });
    // A restart keeps it: still one default cluster, the same id, the same key.
    await first.close();
    await startServeComponent(deployment, 'clusters', env);
    const defaults = await knex.withSchema('clusters').table('clusters').where({ is_default: true }).select('id');
    expect(defaults).toEqual([{ id: cluster!.id }]);
    expect((await store.clusterByKey(key))?.id).toBe(cluster!.id);
    // A rotated Secret re-keys the same cluster: the old key stops working.
    const rotated = `clusterkey-${randomString(48)}`;
    await startServeComponent(deployment, 'clusters', { ...env, MARINER_DEFAULT_CLUSTER_KEY: rotated });
    expect((await store.clusterByKey(rotated))?.id).toBe(cluster!.id);
    expect(await store.clusterByKey(key)).toBeUndefined();
    // A key that is not one is refused at start, naming the setting.
    expect(() => loadConfig({ MARINER_DEFAULT_CLUSTER_KEY: 'hunter2' })).toThrow('MARINER_DEFAULT_CLUSTER_KEY must be clusterkey-');
  }, 60_000);
});
