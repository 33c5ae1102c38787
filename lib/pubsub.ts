import { EventEmitter } from 'node:events';
import pg from 'pg';
import type { Database } from './db.js';

/**
 * Events across replicas (DESIGN §3): small notifications (ids, never the data: that is in tables)
 * on named channels. On PostgreSQL, LISTEN/NOTIFY, so every replica's subscribers hear every
 * replica's events; embedded (PGlite, one process), an in-memory bus behind the same interface —
 * LISTEN/NOTIFY does not work across connections on PGlite (prototypes §C).
 */
export interface PubSub {
  publish(channel: string, payload: string): Promise<void>;
  /** Calls `listener` for each payload published on `channel` from now on; returns the unsubscribe. */
  subscribe(channel: string, listener: (payload: string) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

const CHANNEL = /^[a-z][a-z0-9_]{0,62}$/;

function checkChannel(channel: string): string {
  if (!CHANNEL.test(channel)) throw new Error(`pubsub: channel names are lowercase identifiers, got "${channel}"`);
  return channel;
}

/** The in-memory bus (one process). */
export function createMemoryPubSub(): PubSub {
  const bus = new EventEmitter();
  bus.setMaxListeners(0);
  return {
    async publish(channel, payload) {
      checkChannel(channel);
      // Asynchronous like NOTIFY: a publisher never runs its subscribers' code inline.
      setImmediate(() => bus.emit(channel, payload));
    },
    async subscribe(channel, listener) {
      bus.on(checkChannel(channel), listener);
      return async () => void bus.off(channel, listener);
    },
    async close() {
      bus.removeAllListeners();
    },
  };
}

/**
 * LISTEN/NOTIFY on PostgreSQL: one dedicated connection listens for every channel this process
 * subscribes to; NOTIFY goes through the pool. A lost listening connection is re-opened and its
 * channels listened to again (events in between are lost: subscribers re-read state from tables).
 */
export async function createPostgresPubSub(db: Database, connectionString: string): Promise<PubSub> {
  const bus = new EventEmitter();
  bus.setMaxListeners(0);
  const channels = new Map<string, number>();
  let closed = false;
  let client: pg.Client | undefined;

  async function connect(): Promise<void> {
    const next = new pg.Client({ connectionString });
    next.on('notification', (message) => bus.emit(message.channel, message.payload ?? ''));
    next.on('error', () => undefined);
    next.on('end', () => {
      if (closed) return;
      client = undefined;
      setTimeout(() => void connect().catch(() => undefined), 1000).unref();
    });
    await next.connect();
    for (const channel of channels.keys()) await next.query(`LISTEN "${channel}"`);
    client = next;
  }
  await connect();

  return {
    async publish(channel, payload) {
      await db.knex.raw('select pg_notify(?, ?)', [checkChannel(channel), payload]);
    },
    async subscribe(channel, listener) {
      checkChannel(channel);
      const count = channels.get(channel) ?? 0;
      channels.set(channel, count + 1);
      if (count === 0) await client?.query(`LISTEN "${channel}"`);
      bus.on(channel, listener);
      return async () => {
        bus.off(channel, listener);
        const left = (channels.get(channel) ?? 1) - 1;
        if (left > 0) return void channels.set(channel, left);
        channels.delete(channel);
        await client?.query(`UNLISTEN "${channel}"`).catch(() => undefined);
      };
    },
    async close() {
      closed = true;
      bus.removeAllListeners();
      await client?.end().catch(() => undefined);
    },
  };
}

/** The bus for a database: LISTEN/NOTIFY on PostgreSQL, in memory on PGlite. */
export async function createPubSub(db: Database, databaseUrl: string | undefined): Promise<PubSub> {
  return db.kind === 'postgres' && databaseUrl ? createPostgresPubSub(db, databaseUrl) : createMemoryPubSub();
}
