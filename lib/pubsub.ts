import { randomBytes } from 'node:crypto';
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
  /**
   * Sends `payload` to every subscriber of `channel`, in every replica. Resolves once this process's
   * own subscribers have run (a cache in the publishing process is dropped before the change's
   * answer goes out); other replicas hear it as soon as PostgreSQL delivers it.
   */
  publish(channel: string, payload: string): Promise<void>;
  /** Calls `listener` for each payload published on `channel` from now on; returns the unsubscribe. */
  subscribe(channel: string, listener: (payload: string) => void): Promise<() => Promise<void>>;
  /**
   * For subscribers that keep state built from events (a cache invalidated by them): calls
   * `listener('lost')` when events may be missed from now on (PostgreSQL: the listening connection
   * dropped; either bus: it was closed) and `listener('listening')` once every channel is listened to
   * again. Such a subscriber must drop its state on `lost` and may build it again after `listening`.
   * When events are being missed at the moment of the call, `listener('lost')` is called at once.
   * Returns the unregister.
   */
  onReset(listener: (state: ResetState) => void): () => void;
  close(): Promise<void>;
}

/** What a reset listener is told: events may be missed from now on, or every channel is listened to again. */
export type ResetState = 'lost' | 'listening';

/**
 * The users subgraph publishes on this channel after every change that may change a principal (a key,
 * a membership, a role, an organization or project); the payload is the tenant id, empty for every
 * tenant. The gateway's principal cache (gateway/authentication.ts) drops what it holds for that tenant.
 * Here because both ends import it and neither may import the other (DESIGN §2).
 */
export const PRINCIPALS_CHANNEL = 'principals_changed';

const CHANNEL = /^[a-z][a-z0-9_]{0,62}$/;

function checkChannel(channel: string): string {
  if (!CHANNEL.test(channel)) throw new Error(`pubsub: channel names are lowercase identifiers, got "${channel}"`);
  return channel;
}

/** Reset listeners, and the state they were last told. */
function resetListeners() {
  const listeners = new Set<(state: ResetState) => void>();
  let state: ResetState = 'listening';
  return {
    add(listener: (state: ResetState) => void): () => void {
      listeners.add(listener);
      if (state === 'lost') listener('lost');
      return () => void listeners.delete(listener);
    },
    /** Tells every listener, on a change only. */
    set(next: ResetState): void {
      if (next === state) return;
      state = next;
      for (const listener of [...listeners]) listener(next);
    },
  };
}

/** The in-memory bus (one process): it misses no event, so its reset listeners hear only its close. */
export function createMemoryPubSub(): PubSub {
  const bus = new EventEmitter();
  bus.setMaxListeners(0);
  const resets = resetListeners();
  return {
    async publish(channel, payload) {
      checkChannel(channel);
      // Asynchronous like NOTIFY: a publisher never runs its subscribers' code inline, but it is not
      // answered before they have run.
      await new Promise<void>((resolve) =>
        setImmediate(() => {
          bus.emit(channel, payload);
          resolve();
        }),
      );
    },
    async subscribe(channel, listener) {
      bus.on(checkChannel(channel), listener);
      return async () => void bus.off(channel, listener);
    },
    onReset: (listener) => resets.add(listener),
    async close() {
      resets.set('lost');
      bus.removeAllListeners();
    },
  };
}

/** How long a publish waits at most for its echo (the listening connection may just have dropped). */
const ECHO_WAIT_MS = 2_000;

/**
 * LISTEN/NOTIFY on PostgreSQL: one dedicated connection listens for every channel this process
 * subscribes to; NOTIFY goes through the pool. A lost listening connection is re-opened after 1 s and
 * its channels listened to again. Events in between are lost: subscribers re-read state from tables,
 * and those that keep state built from events hear `lost` at once and `listening` once it listens again
 * (`onReset`).
 *
 * A publish on a channel this process listens to also notifies the process's own echo channel, after
 * the event in the same statement (PostgreSQL delivers one transaction's notifications in order), and
 * resolves when the echo comes back: by then the listening connection has delivered the event and
 * this process's subscribers have run. Without it, a mutation could answer before its own replica's
 * cache heard of it, and the client's next request would read the old answer.
 */
export async function createPostgresPubSub(db: Database, connectionString: string): Promise<PubSub> {
  const bus = new EventEmitter();
  bus.setMaxListeners(0);
  const channels = new Map<string, number>();
  const resets = resetListeners();
  const echoChannel = `mariner_echo_${randomBytes(8).toString('hex')}`;
  const echoes = new Map<string, () => void>();
  let echoed = 0;
  let closed = false;
  let client: pg.Client | undefined;

  async function connect(): Promise<void> {
    // Named, so that an operator (or a test) can tell the listening connection in pg_stat_activity.
    const next = new pg.Client({ connectionString, application_name: LISTENER_APPLICATION_NAME });
    next.on('notification', (message) => {
      if (message.channel !== echoChannel) return void bus.emit(message.channel, message.payload ?? '');
      const id = message.payload ?? '';
      echoes.get(id)?.();
      echoes.delete(id);
    });
    next.on('error', () => undefined);
    next.on('end', () => {
      if (client === next) client = undefined;
      if (closed) return;
      resets.set('lost');
      setTimeout(() => void connect().catch(() => undefined), 1000).unref();
    });
    try {
      await next.connect();
      // Set before listening: a subscribe from now on LISTENs on this connection itself (a channel
      // listened to twice is listened to once), so none added meanwhile is left out.
      client = next;
      await next.query(`LISTEN "${echoChannel}"`);
      for (const channel of channels.keys()) await next.query(`LISTEN "${channel}"`);
    } catch (error) {
      // Ending it (again) ends in 'end', which tries again in 1 s.
      await next.end().catch(() => undefined);
      throw error;
    }
    if (client === next) resets.set('listening');
  }
  try {
    await connect();
  } catch (error) {
    closed = true;
    throw error;
  }

  return {
    async publish(channel, payload) {
      checkChannel(channel);
      if (!client || !channels.has(channel)) return void (await db.knex.raw('select pg_notify(?, ?)', [channel, payload]));
      const id = String(++echoed);
      const heard = new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          echoes.delete(id);
          resolve();
        }, ECHO_WAIT_MS);
        echoes.set(id, () => {
          clearTimeout(timer);
          resolve();
        });
      });
      try {
        // The echo is sent after the event: the CTE's notify runs first, as the outer select reads its row.
        await db.knex.raw('with event as (select pg_notify(?, ?)) select pg_notify(?, ?) from event', [channel, payload, echoChannel, id]);
      } catch (error) {
        echoes.get(id)?.();
        echoes.delete(id);
        throw error;
      }
      await heard;
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
    onReset: (listener) => resets.add(listener),
    async close() {
      closed = true;
      resets.set('lost');
      bus.removeAllListeners();
      for (const release of echoes.values()) release();
      echoes.clear();
      await client?.end().catch(() => undefined);
    },
  };
}

/** The application_name of each process's listening connection. */
export const LISTENER_APPLICATION_NAME = 'mariner-pubsub-listener';

/** The bus for a database: LISTEN/NOTIFY on PostgreSQL, in memory on PGlite. */
export async function createPubSub(db: Database, databaseUrl: string | undefined): Promise<PubSub> {
  return db.kind === 'postgres' && databaseUrl ? createPostgresPubSub(db, databaseUrl) : createMemoryPubSub();
}
