import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from '../test/support/platform.js';
import { openDatabase, type Database } from './db.js';
import { createMemoryPubSub, createPostgresPubSub, type PubSub } from './pubsub.js';

function next(pubsub: PubSub, channel: string): Promise<{ payload: Promise<string>; stop: () => Promise<void> }> {
  let resolve!: (payload: string) => void;
  const payload = new Promise<string>((r) => (resolve = r));
  return pubsub.subscribe(channel, (p) => resolve(p)).then((stop) => ({ payload, stop }));
}

describe('pubsub', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: Database;
  beforeAll(async () => {
    database = await createTestDatabase();
    db = await openDatabase({ databaseUrl: database.url, dataDir: '/tmp' });
  });
  afterAll(async () => {
    await db?.close();
    await database?.drop();
  });

  it('PostgreSQL: an event published by one replica reaches the subscribers of another (LISTEN/NOTIFY)', async () => {
    const replicaA = await createPostgresPubSub(db, database.url);
    const replicaB = await createPostgresPubSub(db, database.url);
    try {
      const heard = await next(replicaB, 'runtimes_test');
      const other = await next(replicaB, 'other_channel');
      await replicaA.publish('runtimes_test', 'tenant-1');
      expect(await heard.payload).toBe('tenant-1');
      // A channel nobody published on stays silent; after unsubscribing, nothing more arrives.
      await heard.stop();
      await other.stop();
      let late = false;
      await replicaB.subscribe('runtimes_test', () => (late = true)).then((stop) => stop());
      await replicaA.publish('runtimes_test', 'tenant-2');
      const confirm = await next(replicaB, 'runtimes_test');
      await replicaA.publish('runtimes_test', 'tenant-3');
      expect(await confirm.payload).toBe('tenant-3');
      expect(late).toBe(false);
    } finally {
      await replicaA.close();
      await replicaB.close();
    }
  });

  it('in memory: subscribers hear publications; bad channel names are refused', async () => {
    const bus = createMemoryPubSub();
    const heard = await next(bus, 'jobs');
    await bus.publish('jobs', 'ftjob-1');
    expect(await heard.payload).toBe('ftjob-1');
    await expect(bus.publish('Bad Channel', 'x')).rejects.toThrow(/lowercase identifiers/);
    await bus.close();
  });
});
