import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from '../test/support/platform.js';
import { openDatabase, type Database } from './db.js';
import { createMemoryPubSub, createPostgresPubSub, LISTENER_APPLICATION_NAME, type PubSub, type ResetState } from './pubsub.js';

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

  it('PostgreSQL: a lost listening connection tells reset listeners at once, and again once every channel is listened to again', async () => {
    const replicaA = await createPostgresPubSub(db, database.url);
    const replicaB = await createPostgresPubSub(db, database.url);
    try {
      const states: ResetState[] = [];
      let listening!: () => void;
      const relistened = new Promise<void>((resolve) => (listening = resolve));
      let lost!: () => void;
      const dropped = new Promise<void>((resolve) => (lost = resolve));
      const stop = replicaB.onReset((state) => {
        states.push(state);
        if (state === 'lost') lost();
        if (state === 'listening') listening();
      });
      const before = await next(replicaB, 'principals_test');
      // Both replicas listen on this database; the test ends both listening connections, as a
      // restarted PostgreSQL or a dropped network connection would.
      const ended = await db.knex.raw(
        'select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and application_name = ? and pid <> pg_backend_pid()',
        [LISTENER_APPLICATION_NAME],
      );
      expect(ended.rows.length).toBe(2);
      await dropped;
      expect(states).toEqual(['lost']);
      // A listener registered while events are being missed hears so at once.
      const late: ResetState[] = [];
      const stopLate = replicaB.onReset((state) => late.push(state));
      expect(late).toEqual(['lost']);
      await relistened;
      expect(states).toEqual(['lost', 'listening']);
      expect(late).toEqual(['lost', 'listening']);
      // Subscribed before the loss, it hears events again (the other replica's publisher uses the pool).
      await replicaA.publish('principals_test', 'tenant-1');
      expect(await before.payload).toBe('tenant-1');
      stop();
      stopLate();
      await before.stop();
    } finally {
      await replicaA.close();
      await replicaB.close();
    }
  });

  it("PostgreSQL: a publish answers once the publishing process's own subscribers have heard it, many at once included", async () => {
    const replica = await createPostgresPubSub(db, database.url);
    try {
      const heard: string[] = [];
      await replica.subscribe('models_test', (payload) => heard.push(payload));
      // A cache in the publishing process (the mutation's own replica) is dropped before the change answers.
      await replica.publish('models_test', 'tenant-1');
      expect(heard).toEqual(['tenant-1']);
      await Promise.all(
        ['a', 'b', 'c'].map(async (tenant) => {
          await replica.publish('models_test', tenant);
          expect(heard).toContain(tenant);
        }),
      );
      // A channel nobody here listens to is published without waiting for an echo that cannot come.
      await replica.publish('nobody_listens', 'x');
      expect(heard).toHaveLength(4);
    } finally {
      await replica.close();
    }
  });

  it('in memory: a close tells reset listeners that no more events come', async () => {
    const bus = createMemoryPubSub();
    const states: ResetState[] = [];
    bus.onReset((state) => states.push(state));
    expect(states).toEqual([]);
    await bus.close();
    expect(states).toEqual(['lost']);
  });

  it('in memory: subscribers hear publications; bad channel names are refused', async () => {
    const bus = createMemoryPubSub();
    const heard = await next(bus, 'jobs');
    const inline: string[] = [];
    await bus.subscribe('jobs', (payload) => inline.push(payload));
    await bus.publish('jobs', 'ftjob-1');
    // Heard before the publish answers, as on PostgreSQL.
    expect(inline).toEqual(['ftjob-1']);
    expect(await heard.payload).toBe('ftjob-1');
    await expect(bus.publish('Bad Channel', 'x')).rejects.toThrow(/lowercase identifiers/);
    await bus.close();
  });
});
