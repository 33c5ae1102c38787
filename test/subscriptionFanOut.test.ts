import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { WebSocket } from 'ws';
import { startAgent } from '../agent/index.js';
import { silentLogger } from '../lib/logging.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { until } from './support/until.js';

/**
 * Every payload the gateway's fan-out serialises, as it was serialised. The serialiser here indents its
 * JSON (graphql-ws never does), so a payload on the wire in this form came from it and nowhere else.
 */
const serialized = vi.hoisted(() => [] as string[]);
vi.mock('../gateway/fanOut.js', async (importOriginal) => {
  const fanOut = await importOriginal<typeof import('../gateway/fanOut.js')>();
  return {
    ...fanOut,
    serializeEvent: (result: Parameters<typeof fanOut.serializeEvent>[0]) => {
      const compact = fanOut.serializeEvent(result).tail.toString('utf8');
      const indented = JSON.stringify(JSON.parse(compact.slice(0, -1)), null, 1);
      serialized.push(indented);
      return { tail: Buffer.from(`${indented}}`) };
    },
  };
});

const TUNNELS = `subscription Tunnels($id: ID!) {
  clusterTunnels(clusterId: $id) { connected tunnels { agentId transport } cluster { id name } }
}`;

/** A graphql-ws connection spoken by hand, keeping each message's exact text and frame type. */
async function connect(t: TestPlatform) {
  const socket = new WebSocket(t.graphqlUrl.replace('http://', 'ws://'), 'graphql-transport-ws');
  const frames: { text: string; binary: boolean }[] = [];
  socket.on('message', (data, binary) => frames.push({ text: data.toString(), binary }));
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
  socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${t.adminKey}` } }));
  await until(() => frames.length > 0, 'connection_ack');
  expect(JSON.parse(frames.shift()!.text)).toEqual({ type: 'connection_ack' });
  return { socket, frames, send: (message: object) => socket.send(JSON.stringify(message)) };
}

describe('fan-out of a shared subscription', () => {
  let t: TestPlatform;
  const sockets: WebSocket[] = [];

  beforeAll(async () => {
    t = await startTestPlatform();
  });
  afterAll(async () => {
    for (const socket of sockets) socket.terminate();
    await t?.close();
  });

  it('serialises each event once, whatever the number of followers, and sends each follower those bytes under its own id', async () => {
    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "fan-out" }) { registrationKey cluster { id } } }');
    const id = registerCluster.cluster.id;
    const connections = await Promise.all([1, 2, 3, 4].map(() => connect(t)));
    sockets.push(...connections.map((c) => c.socket));
    const followers = connections.flatMap((connection, c) => Array.from({ length: 10 }, (_, f) => ({ connection, id: `follower-${c}-${f}` })));
    const nextsOf = (follower: (typeof followers)[number]) => follower.connection.frames.filter((frame) => JSON.parse(frame.text).id === follower.id);
    for (const follower of followers) follower.connection.send({ id: follower.id, type: 'subscribe', payload: { query: TUNNELS, variables: { id } } });
    await until(() => followers.every((f) => nextsOf(f).length === 1), 'every follower to get the first event');
    expect(t.platform.gatewaySharedSubscriptions()).toBe(1);

    // The agent connects, then goes: two more events for everyone.
    const agent = await startAgent({ controlPlaneUrl: t.url, registrationKey: registerCluster.registrationKey, executor: 'local', logger: silentLogger() });
    await until(() => followers.every((f) => nextsOf(f).some((frame) => JSON.parse(frame.text).payload.data.clusterTunnels.connected)), 'the connected event');
    await agent.close();
    await until(
      () => followers.every((f) => JSON.parse(nextsOf(f).at(-1)!.text).payload.data.clusterTunnels.connected === false && nextsOf(f).length > 2),
      'the disconnected event',
    );

    // One serialisation per event, not one per event and follower.
    const events = nextsOf(followers[0]!).length;
    expect(serialized).toHaveLength(events);
    for (const follower of followers) {
      expect(nextsOf(follower)).toEqual(serialized.map((payload) => ({ text: `{"id":"${follower.id}","type":"next","payload":${payload}}`, binary: false })));
    }

    // graphql-ws still completes each operation when asked, and the upstream goes with the last follower.
    for (const follower of followers) follower.connection.send({ id: follower.id, type: 'complete' });
    await until(() => t.platform.gatewaySharedSubscriptions() === 0, 'the upstream subscription to close');
  });
});
