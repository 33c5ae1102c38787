/**
 * Issue 14: the bootstrap admin key. `mariner serve users` runs where its output is collected (pod logs),
 * so it must never write the key there; and a rotated MARINER_ADMIN_API_KEY must revoke the previous key.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import knexFactory from 'knex';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startPlatform, type Platform } from '../../bin/platform.js';
import { loadConfig } from '../../lib/config.js';
import { migrate, openDatabase } from '../../lib/db.js';
import { hashSecret, newId, randomString } from '../../lib/ids.js';
import { createLogger } from '../../lib/logging.js';
import { GENERATED_ADMIN_API_KEY_FILE, UserStore } from '../../subgraphs/users/index.js';
import { initial } from '../../subgraphs/users/migrations/001_initial.js';
import { LogCapture } from '../support/logCapture.js';
import { createTestDatabase, graphqlCall } from '../support/platform.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const dirs: string[] = [];
const databases: { drop(): Promise<void> }[] = [];

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'mariner-bootstrap-'));
  dirs.push(dir);
  return dir;
}

async function database() {
  const db = await createTestDatabase();
  databases.push(db);
  return db;
}

afterAll(async () => {
  for (const db of databases) await db.drop();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** `mariner serve users` as the chart runs it, in a child process; all of its output is kept. */
async function serveUsers(settings: Record<string, string>): Promise<{ output: string }> {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('MARINER_') && !key.startsWith('VITEST') && key !== 'DATABASE_URL' && key !== 'NODE_ENV') env[key] = value;
  }
  const child = spawn(process.execPath, ['--import', 'tsx', 'bin/mariner.ts', 'serve', 'users'], {
    cwd: ROOT,
    env: {
      ...env,
      MARINER_HOST: '127.0.0.1',
      MARINER_PORT: '0',
      MARINER_OPS_PORT: '0',
      MARINER_LOG_LEVEL: 'info',
      MARINER_SHUTDOWN_DELAY_MS: '0',
      MARINER_INTERNAL_TOKEN_SECRET: randomString(40),
      ...settings,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`mariner serve users not ready within 60 s:\n${output}`)), 60_000);
    const read = (chunk: string) => {
      output += chunk;
      if (output.includes('component ready')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.setEncoding('utf8').on('data', read);
    child.stderr.setEncoding('utf8').on('data', read);
    void exited.then((code) => reject(new Error(`mariner serve users exited (${code}) before it was ready:\n${output}`)));
  });
  child.kill('SIGTERM');
  expect(await exited).toBe(0);
  return { output };
}

/** Whether the users store knows a key (the serve test has no gateway to ask). */
async function keyWorks(databaseUrl: string, secret: string): Promise<boolean> {
  const knex = knexFactory({ client: 'pg', connection: databaseUrl, pool: { min: 0, max: 1 } });
  try {
    return (await new UserStore(knex).principalByApiKey(secret)) !== null;
  } finally {
    await knex.destroy();
  }
}

describe('mariner serve users and the bootstrap admin key', () => {
  it('a generated key goes to a file only its user can read, never to the output; a fixed key later replaces it', async () => {
    const db = await database();
    const dataDir = tempDir();
    const first = await serveUsers({ DATABASE_URL: db.url, MARINER_DATA_DIR: dataDir });
    const file = path.join(dataDir, GENERATED_ADMIN_API_KEY_FILE);
    const generated = readFileSync(file, 'utf8').trim();
    expect(generated).toMatch(/^sk-[A-Za-z0-9]{48}$/);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(first.output).not.toContain(generated);
    expect(first.output).toContain(file);
    expect(await keyWorks(db.url, generated)).toBe(true);

    const fixed = `sk-${randomString(40)}`;
    const second = await serveUsers({ DATABASE_URL: db.url, MARINER_DATA_DIR: dataDir, MARINER_ADMIN_API_KEY: fixed });
    expect(second.output).not.toContain(fixed);
    expect(second.output).not.toContain(generated);
    expect(second.output).toContain('previous bootstrap admin API key is revoked');
    expect(await keyWorks(db.url, fixed)).toBe(true);
    expect(await keyWorks(db.url, generated)).toBe(false);
  }, 120_000);
});

describe('a changed MARINER_ADMIN_API_KEY', () => {
  let platform: Platform | undefined;
  afterEach(async () => {
    await platform?.close();
    platform = undefined;
  });

  /** `mariner up` against one PostgreSQL database: a restart keeps the data. */
  async function start(databaseUrl: string, dataDir: string, adminApiKey: string | undefined, logs = new LogCapture()) {
    const config = loadConfig(
      {},
      { port: 0, dataDir, databaseUrl, adminApiKey, logLevel: 'info', objectStore: { driver: 'filesystem', dir: path.join(dataDir, 'objects') } },
    );
    config.clusters = { ...config.clusters, defaultCluster: false };
    platform = await startPlatform(config, { logger: createLogger('info', 'mariner', logs) });
    return platform;
  }
  async function restart(databaseUrl: string, dataDir: string, adminApiKey: string | undefined, logs?: LogCapture) {
    await platform?.close();
    platform = undefined;
    return start(databaseUrl, dataDir, adminApiKey, logs);
  }
  const self = (p: Platform, key: string) => graphqlCall<{ self: { id: string } }>(`${p.url}/graphql`, '{ self { id } }', undefined, { token: key });
  const models = (p: Platform, key: string) => fetch(`${p.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });

  it('revokes the previous key: it gets 401 on GraphQL and the OpenAI API, the new one works', async () => {
    const db = await database();
    const dataDir = tempDir();
    const oldKey = `sk-${randomString(40)}`;
    const newKey = `sk-${randomString(40)}`;
    const before = await start(db.url, dataDir, oldKey);
    expect((await self(before, oldKey)).data?.self.id).toBe('admin@example.com');
    // A key the admin made for themselves is theirs, not the bootstrap's: a rotation leaves it.
    const { data } = await graphqlCall<any>(`${before.url}/graphql`, 'mutation { createApiKey(input: { name: "admin (bootstrap)" }) { secret } }', undefined, {
      token: oldKey,
    });
    const ownKey = data.createApiKey.secret as string;

    const logs = new LogCapture();
    const after = await restart(db.url, dataDir, newKey, logs);
    expect((await self(after, oldKey)).status).toBe(401);
    expect((await models(after, oldKey)).status).toBe(401);
    expect((await self(after, newKey)).data?.self.id).toBe('admin@example.com');
    expect((await models(after, newKey)).status).toBe(200);
    expect((await self(after, ownKey)).data?.self.id).toBe('admin@example.com');
    expect(logs.lines.some((l) => String(l.msg).includes('previous bootstrap admin API key is revoked'))).toBe(true);
    expect(JSON.stringify(logs.lines)).not.toContain(newKey);

    // The same key again, or none: nothing changes (removing the setting must not lock the admin out).
    const same = await restart(db.url, dataDir, newKey);
    expect((await self(same, newKey)).status).toBe(200);
    const unset = await restart(db.url, dataDir, undefined);
    expect((await self(unset, newKey)).status).toBe(200);
    expect((await self(unset, oldKey)).status).toBe(401);
  }, 60_000);

  it('revokes a key generated on the first start once a fixed key is set', async () => {
    const db = await database();
    const dataDir = tempDir();
    const first = await start(db.url, dataDir, undefined);
    const generated = first.adminApiKey!;
    expect(generated).toMatch(/^sk-/);
    expect((await self(first, generated)).status).toBe(200);
    const fixed = `sk-${randomString(40)}`;
    const second = await restart(db.url, dataDir, fixed);
    expect((await self(second, generated)).status).toBe(401);
    expect((await self(second, fixed)).status).toBe(200);
  }, 60_000);

  it('revokes a bootstrap key stored by an earlier release, which did not mark it', async () => {
    const db = await database();
    const dataDir = tempDir();
    const oldKey = `sk-${randomString(40)}`;
    const otherKey = `sk-${randomString(40)}`;
    // The rows the earlier bootstrap wrote, before migration 003.
    const old = await openDatabase({ databaseUrl: db.url, dataDir });
    await migrate(old.knex, 'users', [initial]);
    const users = () => old.knex.withSchema('users');
    const orgId = newId('organization');
    const projectId = newId('project');
    await users().table('organizations').insert({ id: orgId, tenant_id: 'tenant-default', title: 'Default Organization', is_default: true });
    await users()
      .table('projects')
      .insert({
        id: projectId,
        tenant_id: 'tenant-default',
        organization_id: orgId,
        title: 'Default Project',
        is_default: true,
        assignments: JSON.stringify([{ clusterId: null, namespace: 'default', kueueQueueName: null, nodeSelector: [] }]),
      });
    await users()
      .table('users')
      .insert({ id: 'admin@example.com', internal_id: randomString(16), tenant_id: 'tenant-default' });
    await users().table('organization_members').insert({ organization_id: orgId, user_id: 'admin@example.com', role: 'OWNER' });
    await users().table('project_members').insert({ project_id: projectId, user_id: 'admin@example.com', role: 'OWNER' });
    const key = (id: string, name: string, secret: string, excluded: boolean) => ({
      id,
      tenant_id: 'tenant-default',
      name,
      secret_hash: hashSecret(secret),
      secret_hint: 'sk-..',
      user_id: 'admin@example.com',
      organization_id: orgId,
      project_id: projectId,
      excluded_from_rate_limiting: excluded,
    });
    await users()
      .table('api_keys')
      .insert([key(newId('apiKey'), 'admin (bootstrap)', oldKey, true), key(newId('apiKey'), 'admin (bootstrap)', otherKey, false)]);
    await old.close();

    const rotated = await start(db.url, dataDir, `sk-${randomString(40)}`);
    expect((await self(rotated, oldKey)).status).toBe(401);
    // Same name, but not made by the bootstrap (it is rate limited): kept.
    expect((await self(rotated, otherKey)).status).toBe(200);
  }, 60_000);
});
