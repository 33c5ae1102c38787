import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startTestOidcProvider, type TestOidcProvider } from './support/oidcProvider.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';

const LIVE = 'subscription { runtimesUpdated { readyModelIds } }';

interface RawConnection {
  socket: WebSocket;
  /** The next message from the server. */
  next(): Promise<Record<string, any>>;
  send(message: Record<string, unknown>): void;
  closed: Promise<{ code: number; reason: string }>;
}

/** A graphql-ws connection spoken by hand, to see the protocol's close codes. */
async function connect(t: TestPlatform, options: { init?: Record<string, unknown> | null } = {}): Promise<RawConnection> {
  const socket = new WebSocket(t.graphqlUrl.replace('http://', 'ws://'), 'graphql-transport-ws');
  const messages: Record<string, any>[] = [];
  const waiters: ((m: Record<string, any>) => void)[] = [];
  socket.on('message', (data) => {
    const message = JSON.parse(data.toString()) as Record<string, any>;
    const waiter = waiters.shift();
    if (waiter) waiter(message);
    else messages.push(message);
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
  const connection: RawConnection = {
    socket,
    closed,
    next: () => (messages.length > 0 ? Promise.resolve(messages.shift()!) : new Promise((resolve) => waiters.push(resolve))),
    send: (message) => socket.send(JSON.stringify(message)),
  };
  if (options.init !== null) {
    connection.send({ type: 'connection_init', payload: options.init ?? { authorization: `Bearer ${t.adminKey}` } });
    expect((await connection.next()).type).toBe('connection_ack');
  }
  return connection;
}

describe('graphql-ws at the gateway: protocol errors, caps, credentials that end', () => {
  let t: TestPlatform;
  let idp: TestOidcProvider;
  const sockets: WebSocket[] = [];
  const open = async (options: { init?: Record<string, unknown> | null } = {}) => {
    const connection = await connect(t, options);
    sockets.push(connection.socket);
    return connection;
  };

  beforeAll(async () => {
    idp = await startTestOidcProvider({ audience: 'mariner' });
    t = await startTestPlatform({
      config: {
        oidc: { issuer: idp.issuer, audience: 'mariner', emailClaim: 'email' },
        subscriptions: { maxPerConnection: 2, maxPerUser: 3, maxQueuedEvents: 1000, revalidateIntervalMs: 200, initTimeoutMs: 300 },
      },
    });
    const self = await t.gqlOk(`{ self { organizationRoleBindings { organization { id } } projectRoleBindings { project { id } } } }`);
    await t.gqlOk(
      `mutation { addOrganizationMember(organizationId: "${self.self.organizationRoleBindings[0].organization.id}", userId: "erin@example.com", role: READER) { role } }`,
    );
    await t.gqlOk(
      `mutation { addProjectMember(projectId: "${self.self.projectRoleBindings[0].project.id}", userId: "erin@example.com", role: MEMBER) { role } }`,
    );
  });
  afterAll(async () => {
    for (const socket of sockets) socket.terminate();
    await t?.close();
    await idp?.close();
  });

  it('closes a connection that never says connection_init with 4408', async () => {
    const connection = await open({ init: null });
    expect((await connection.closed).code).toBe(4408);
  });

  it('closes with 4429 on a second connection_init, 4409 on a reused operation id and 4400 on a message it cannot read', async () => {
    const twice = await open();
    twice.send({ type: 'connection_init', payload: {} });
    expect((await twice.closed).code).toBe(4429);

    const duplicate = await open();
    duplicate.send({ id: 'a', type: 'subscribe', payload: { query: LIVE } });
    expect((await duplicate.next()).type).toBe('next');
    duplicate.send({ id: 'a', type: 'subscribe', payload: { query: LIVE } });
    expect((await duplicate.closed).code).toBe(4409);

    const garbled = await open();
    garbled.socket.send('not json');
    expect((await garbled.closed).code).toBe(4400);
  });

  it('caps the operations open on one connection, and frees a slot when one completes', async () => {
    const connection = await open();
    for (const id of ['1', '2']) {
      connection.send({ id, type: 'subscribe', payload: { query: LIVE } });
      expect(await connection.next()).toMatchObject({ id, type: 'next' });
    }
    connection.send({ id: '3', type: 'subscribe', payload: { query: LIVE } });
    const refused = await connection.next();
    expect(refused).toMatchObject({ id: '3', type: 'error' });
    expect(refused['payload'][0]).toMatchObject({ message: expect.stringContaining('At most 2 operations'), extensions: { code: 'RATE_LIMITED' } });

    connection.send({ id: '1', type: 'complete' });
    connection.send({ id: '4', type: 'subscribe', payload: { query: LIVE } });
    expect(await connection.next()).toMatchObject({ id: '4', type: 'next' });
    connection.socket.close();
    await connection.closed;
  });

  it("caps one user's operations across connections; closing a connection gives its share back", async () => {
    const first = await open();
    const second = await open();
    for (const [connection, id] of [
      [first, 'x'],
      [first, 'y'],
      [second, 'z'],
    ] as const) {
      connection.send({ id, type: 'subscribe', payload: { query: LIVE } });
      expect(await connection.next()).toMatchObject({ id, type: 'next' });
    }
    second.send({ id: 'w', type: 'subscribe', payload: { query: LIVE } });
    expect(await second.next()).toMatchObject({ id: 'w', type: 'error', payload: [{ extensions: { code: 'RATE_LIMITED' } }] });

    first.socket.close();
    await first.closed;
    second.send({ id: 'v', type: 'subscribe', payload: { query: LIVE } });
    expect(await second.next()).toMatchObject({ id: 'v', type: 'next' });
  });

  it('ends the connection with 4401 when its API key is deleted', async () => {
    const { createApiKey } = await t.gqlOk(`mutation { createApiKey(input: { name: "short-lived" }) { apiKey { id } secret } }`);
    const connection = await open({ init: { authorization: `Bearer ${createApiKey.secret}` } });
    connection.send({ id: 'k', type: 'subscribe', payload: { query: LIVE } });
    expect(await connection.next()).toMatchObject({ id: 'k', type: 'next' });
    await t.gqlOk(`mutation($id: ID!) { deleteApiKey(id: $id) { id } }`, { id: createApiKey.apiKey.id });
    const closed = await connection.closed;
    expect(closed).toEqual({ code: 4401, reason: expect.stringContaining('Credential no longer valid') });
  });

  it('ends the connection with 4401 when its OIDC token expires', async () => {
    const token = await idp.shortLivedTokenFor('erin@example.com', 2);
    const connection = await open({ init: { authorization: `Bearer ${token}` } });
    connection.send({ id: 't', type: 'subscribe', payload: { query: LIVE } });
    expect(await connection.next()).toMatchObject({ id: 't', type: 'next' });
    const closed = await connection.closed;
    expect(closed).toEqual({ code: 4401, reason: 'Token expired: reconnect with a fresh token' });
  });
});

describe('graphql-ws when the platform stops', () => {
  it('closes open subscriptions with 1001 and a reason, not by cutting the socket', async () => {
    const t = await startTestPlatform();
    let closed = false;
    try {
      const connection = await connect(t);
      connection.send({ id: 's', type: 'subscribe', payload: { query: LIVE } });
      expect(await connection.next()).toMatchObject({ id: 's', type: 'next' });
      await t.close();
      closed = true;
      expect(await connection.closed).toEqual({ code: 1001, reason: 'server shutting down' });
    } finally {
      if (!closed) await t.close();
    }
  });
});
