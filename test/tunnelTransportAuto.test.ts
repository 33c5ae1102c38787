import { createServer, request, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import { agentRoutes } from '../lib/agentContract.js';
import { createLogger } from '../lib/logging.js';
import { LogCapture } from './support/logCapture.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';

/**
 * The agent's tunnel transport (issue 23): `auto`, the default, dials the custom Upgrade token first and,
 * when the proxy in front of the control plane cannot pass it, moves to the WebSocket by itself and says why
 * once. Here the proxy is a real HTTP proxy on loopback that forwards requests and WebSocket upgrades only,
 * and either answers any other upgrade 400 (as ALB-like proxies do) or resets the connection.
 */

/** An HTTP proxy to `target` that passes WebSocket upgrades only; others get `refusal`. */
async function startWebSocketOnlyProxy(target: string, refusal: 'answer-400' | 'reset', passWebSockets = true) {
  const to = new URL(target);
  const upgrades: string[] = [];
  const server: Server = createServer((req, res) => {
    const upstream = request({ host: to.hostname, port: to.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  server.on('upgrade', (req, socket: Socket, head: Buffer) => {
    const token = String(req.headers.upgrade ?? '').toLowerCase();
    upgrades.push(token);
    if (token !== 'websocket' || !passWebSockets) {
      if (refusal === 'reset') return void socket.resetAndDestroy();
      socket.end('HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 24\r\nconnection: close\r\n\r\nunsupported upgrade type');
      return;
    }
    const upstream = connect(Number(to.port), to.hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
      upstream.write(head);
      upstream.pipe(socket).pipe(upstream);
    });
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
  });
  const sockets = new Set<Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    upgrades,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A request from the control plane to the cluster over its tunnel: the agent's own health route. */
async function askAgent(t: TestPlatform, clusterId: string): Promise<{ agentId: string }> {
  const stream = t.platform.sessions.registry.request(clusterId, { ':method': 'GET', ':path': agentRoutes.healthz() }, { endStream: true });
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString()) as { agentId: string };
}

const CLUSTER = `query($id: ID!) { cluster(id: $id) { connected tunnels { agentId transport } } }`;

describe('the agent`s tunnel moves to the WebSocket when a proxy cannot pass the Upgrade token', () => {
  let t: TestPlatform;
  const agents: Agent[] = [];
  const closers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    t = await startTestPlatform();
  });
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.close()));
    for (const close of closers) await close();
    await t?.close();
  });

  const register = async (name: string) => {
    const { registerCluster } = await t.gqlOk(`mutation($name: String!) { registerCluster(input: { name: $name }) { registrationKey cluster { id } } }`, {
      name,
    });
    return { key: registerCluster.registrationKey as string, id: registerCluster.cluster.id as string };
  };
  const agentBehind = async (proxyUrl: string, key: string, transport?: 'auto' | 'upgrade' | 'websocket') => {
    const logs = new LogCapture();
    const agent = await startAgent({
      controlPlaneUrl: proxyUrl,
      registrationKey: key,
      executor: 'local',
      logger: createLogger('info', 'agent', logs),
      backoff: { initialMs: 20, maxMs: 200 },
      ...(transport ? { transport } : {}),
    });
    agents.push(agent);
    return { agent, logs };
  };
  const switchLines = (logs: LogCapture) => logs.lines.filter((line) => /using the WebSocket transport/.test(line.msg ?? ''));

  for (const refusal of ['answer-400', 'reset'] as const) {
    it(`by default (auto): the Upgrade is refused (${refusal}), the agent switches, says why once, connects and serves requests`, async () => {
      const proxy = await startWebSocketOnlyProxy(t.url, refusal);
      closers.push(proxy.close);
      const cluster = await register(`behind-proxy-${refusal}`);
      const { agent, logs } = await agentBehind(proxy.url, cluster.key);
      await agent.whenConnected();
      expect((await askAgent(t, cluster.id)).agentId).toBe(agent.agentId);
      const { cluster: shown } = await t.gqlOk(CLUSTER, { id: cluster.id });
      expect(shown).toEqual({ connected: true, tunnels: [{ agentId: agent.agentId, transport: 'WEBSOCKET' }] });
      const [line] = switchLines(logs);
      expect(line?.msg).toContain(refusal === 'reset' ? 'the connection was reset' : 'answered 400 instead of 101');
      expect(line?.level).toBe(40);

      // After a cut it redials the WebSocket straight away: no new Upgrade try, no second log line.
      const tried = proxy.upgrades.filter((token) => token !== 'websocket').length;
      agent.dropConnections();
      await logs.next((l) => l.msg === 'tunnel down; reconnecting', 'the tunnel to drop');
      await agent.whenConnected();
      expect((await askAgent(t, cluster.id)).agentId).toBe(agent.agentId);
      expect(proxy.upgrades.filter((token) => token !== 'websocket').length).toBe(tried);
      expect(switchLines(logs)).toHaveLength(1);
    }, 60_000);
  }

  it('when the WebSocket is refused too, the agent says both and keeps trying, without settling on either', async () => {
    const proxy = await startWebSocketOnlyProxy(t.url, 'answer-400', false);
    closers.push(proxy.close);
    const cluster = await register('no-way-through');
    const { agent, logs } = await agentBehind(proxy.url, cluster.key);
    const failed = await logs.next((l) => l.msg === 'tunnel connection failed', 'a failed dial');
    expect(String(failed['err'])).toMatch(/^the Upgrade answered 400 instead of 101, and the WebSocket failed too: /);
    // The next dial tries the Upgrade again (its failure names it first), then the WebSocket again.
    const again = await logs.next((l) => l.msg === 'tunnel connection failed' && l !== failed, 'a second failed dial');
    expect(String(again['err'])).toMatch(/^the Upgrade answered 400 instead of 101, and the WebSocket failed too: /);
    expect(agent.connected()).toBe(false);
    expect(switchLines(logs)).toEqual([]);
  }, 60_000);

  it('without a proxy in the way, auto keeps the Upgrade', async () => {
    const cluster = await register('direct');
    const { agent, logs } = await agentBehind(t.url, cluster.key);
    await agent.whenConnected();
    const { cluster: shown } = await t.gqlOk(CLUSTER, { id: cluster.id });
    expect(shown.tunnels).toEqual([{ agentId: agent.agentId, transport: 'UPGRADE' }]);
    expect(switchLines(logs)).toEqual([]);
  }, 60_000);

  it('a transport pinned to upgrade never switches: the refusal is logged and retried as it is', async () => {
    const proxy = await startWebSocketOnlyProxy(t.url, 'answer-400');
    closers.push(proxy.close);
    const cluster = await register('pinned-upgrade');
    const { agent, logs } = await agentBehind(proxy.url, cluster.key, 'upgrade');
    // Two failed dials, each a refused Upgrade; never a WebSocket.
    await logs.next((l) => l.msg === 'tunnel connection failed' && /answered 400 instead of upgrading/.test(String(l['err'])), 'a first refused dial');
    await logs.next(
      (l) => l.msg === 'tunnel down; reconnecting' && logs.lines.filter((x) => x.msg === 'tunnel connection failed').length >= 2,
      'a second refused dial',
    );
    expect(agent.connected()).toBe(false);
    expect(proxy.upgrades.filter((token) => token === 'websocket')).toEqual([]);
    expect(switchLines(logs)).toEqual([]);
  }, 60_000);

  it('a transport pinned to websocket connects through that proxy without trying the Upgrade', async () => {
    const proxy = await startWebSocketOnlyProxy(t.url, 'answer-400');
    closers.push(proxy.close);
    const cluster = await register('pinned-websocket');
    const { agent } = await agentBehind(proxy.url, cluster.key, 'websocket');
    await agent.whenConnected();
    expect((await askAgent(t, cluster.id)).agentId).toBe(agent.agentId);
    expect(proxy.upgrades).toEqual(['websocket']);
  }, 60_000);
});
