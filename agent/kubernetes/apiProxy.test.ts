import { execFile, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import net, { type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKubeApiServer, type KubeApiServer } from '../../test/support/kubeApiServer.js';
import { createKubeApiProxy, UPGRADE_HEADER, UPGRADE_HEADERS_HEADER, UPGRADE_METHOD_HEADER, UPGRADE_RESPONSE_HEADER } from './apiProxy.js';

const NAMESPACE = 'mariner-proj';

/** Node has no API to issue certificates; without an openssl binary the TLS test is skipped. */
const HAS_OPENSSL = spawnSync('openssl', ['version']).status === 0;

function kubeConfigFor(server: string, token: string, tlsFiles?: { ca: Buffer; cert: Buffer; key: Buffer }): KubeConfig {
  const kubeConfig = new KubeConfig();
  const base64 = (data: Buffer) => data.toString('base64');
  kubeConfig.loadFromOptions({
    clusters: [tlsFiles ? { name: 'test', server, caData: base64(tlsFiles.ca) } : { name: 'test', server, skipTLSVerify: true }],
    users: [tlsFiles ? { name: 'agent', token, certData: base64(tlsFiles.cert), keyData: base64(tlsFiles.key) } : { name: 'agent', token }],
    contexts: [{ name: 'test', cluster: 'test', user: 'agent' }],
    currentContext: 'test',
  });
  return kubeConfig;
}

/** The agent's side of the tunnel: an h2c server whose requests go to the proxy, as agent/index.ts routes them. */
async function startTunnelEnd(kubeConfig: KubeConfig): Promise<{ url: string; close(): Promise<void> }> {
  const proxy = createKubeApiProxy(kubeConfig);
  const server = http2.createServer((req, res) => {
    if (req.headers[UPGRADE_HEADER]) proxy.handleUpgrade(req.stream, req.headers, req.url);
    else proxy.handle(req, res, req.url);
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      for (const session of sessions) session.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * A TCP relay in front of the apiserver, so the test sees the proxy's upstream connections open
 * and close (the client KubeConfig makes builds a fresh agent per request: one connection each).
 */
async function startRelay(target: string): Promise<{ url: string; connections: Socket[]; nextConnection(): Promise<Socket>; close(): Promise<void> }> {
  const { hostname, port } = new URL(target);
  const connections: Socket[] = [];
  const waiting: ((socket: Socket) => void)[] = [];
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), hostname);
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
    connections.push(client);
    waiting.shift()?.(client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections,
    nextConnection: () => new Promise((resolve) => waiting.push(resolve)),
    close: async () => {
      for (const socket of connections) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

function send(client: ClientHttp2Session, headers: http2.OutgoingHttpHeaders): { stream: ClientHttp2Stream; response: Promise<IncomingHttpHeaders> } {
  const stream = client.request(headers, { endStream: headers[':method'] === undefined || headers[':method'] === 'GET' });
  const response = new Promise<IncomingHttpHeaders>((resolve, reject) => {
    stream.once('response', resolve);
    stream.once('error', reject);
  });
  return { stream, response };
}

async function readAll(stream: ClientHttp2Stream): Promise<string> {
  stream.setEncoding('utf8');
  let text = '';
  for await (const chunk of stream) text += chunk;
  return text;
}

/** Resolves with the text received once it contains `expected`. */
function receive(stream: ClientHttp2Stream, received: { text: string }, expected: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!received.text.includes(expected)) return;
      stream.off('data', check);
      resolve(received.text);
    };
    stream.on('data', check);
    stream.once('end', () => reject(new Error(`the stream ended before "${expected}" arrived: ${JSON.stringify(received.text)}`)));
    check();
  });
}

/** A masked client WebSocket frame (RFC 6455 §5.2), payloads under 126 bytes. */
function clientFrame(opcode: number, payload: Buffer): Buffer {
  const mask = randomBytes(4);
  const masked = Buffer.from(payload.map((byte, i) => byte ^ mask[i % 4]));
  return Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | payload.length]), mask, masked]);
}

/** Reads unmasked server frames from a byte stream. */
function serverFrames(stream: ClientHttp2Stream): () => Promise<{ opcode: number; payload: Buffer }> {
  let buffered = Buffer.alloc(0);
  const frames: { opcode: number; payload: Buffer }[] = [];
  const waiting: ((frame: { opcode: number; payload: Buffer }) => void)[] = [];
  stream.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    for (;;) {
      if (buffered.length < 2) return;
      let length = buffered[1] & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (buffered.length < 4) return;
        length = buffered.readUInt16BE(2);
        offset = 4;
      }
      if (buffered.length < offset + length) return;
      const frame = { opcode: buffered[0] & 0x0f, payload: buffered.subarray(offset, offset + length) };
      buffered = buffered.subarray(offset + length);
      const next = waiting.shift();
      if (next) next(frame);
      else frames.push(frame);
    }
  });
  return () => {
    const frame = frames.shift();
    return frame ? Promise.resolve(frame) : new Promise((resolve) => waiting.push(resolve));
  };
}

describe('the Kubernetes API proxy', () => {
  let apiserver: KubeApiServer;
  let relay: Awaited<ReturnType<typeof startRelay>>;
  let tunnelEnd: Awaited<ReturnType<typeof startTunnelEnd>>;
  let client: ClientHttp2Session;
  let core: CoreV1Api;

  beforeAll(async () => {
    apiserver = await startKubeApiServer();
    relay = await startRelay(apiserver.url);
    tunnelEnd = await startTunnelEnd(kubeConfigFor(relay.url, apiserver.token));
    client = http2.connect(tunnelEnd.url);

    core = kubeConfigFor(apiserver.url, apiserver.token).makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: NAMESPACE } } });
    for (const name of ['trainer', 'notebook']) {
      await core.createNamespacedPod({ namespace: NAMESPACE, body: { metadata: { name }, spec: { containers: [{ name: 'main', image: 'busybox' }] } } });
      await core.patchNamespacedPodStatus(
        { namespace: NAMESPACE, name, body: { status: { phase: 'Running' } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    }
  });

  afterAll(async () => {
    client?.close();
    await tunnelEnd?.close();
    await relay?.close();
    await apiserver?.close();
  });

  it("answers with the apiserver's JSON, with the agent's token instead of the user's key", async () => {
    const path = `/api/v1/namespaces/${NAMESPACE}/pods`;
    const { stream, response } = send(client, { ':path': path, authorization: 'Bearer sk-user', accept: 'application/json' });
    const headers = await response;
    const body = JSON.parse(await readAll(stream));

    expect(headers[':status']).toBe(200);
    expect(headers['content-type']).toBe('application/json');
    expect(body.kind).toBe('PodList');
    expect(body.items.map((pod: { metadata: { name: string } }) => pod.metadata.name)).toEqual(['notebook', 'trainer']);
    const seen = apiserver.requests.filter((request) => request.method === 'GET' && request.path === path);
    expect(seen).toHaveLength(1);
    expect(seen[0].headers.authorization).toBe(`Bearer ${apiserver.token}`);
    expect(seen[0].headers.accept).toBe('application/json');
    expect(JSON.stringify(apiserver.requests)).not.toContain('sk-user');
  });

  it("keeps cookies from the apiserver, but passes them to a Service behind its proxy (a notebook's own)", async () => {
    const api = send(client, { ':path': `/api/v1/namespaces/${NAMESPACE}/pods`, cookie: 'session=secret' });
    await api.response;
    await readAll(api.stream);
    expect(apiserver.requests.at(-1)!.headers.cookie).toBeUndefined();
    // No endpoint serves it here: the apiserver answers 503, after the request reached it with the cookie.
    await core.createNamespacedService({ namespace: NAMESPACE, body: { metadata: { name: 'lab' }, spec: { ports: [{ port: 8888 }] } } });
    const proxied = send(client, {
      ':path': `/api/v1/namespaces/${NAMESPACE}/services/lab:8888/proxy/lab`,
      cookie: '_xsrf=abc',
      authorization: 'Bearer sk-user',
    });
    expect((await proxied.response)[':status']).toBe(503);
    await readAll(proxied.stream);
    expect(apiserver.requests.at(-1)!.headers).toMatchObject({ cookie: '_xsrf=abc', authorization: `Bearer ${apiserver.token}` });
  });

  it('forwards a request body and the status of a failure', async () => {
    const { stream, response } = send(client, {
      ':method': 'POST',
      ':path': `/api/v1/namespaces/${NAMESPACE}/configmaps`,
      'content-type': 'application/json',
    });
    stream.end(JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings' }, data: { a: '1' } }));
    expect((await response)[':status']).toBe(201);
    expect(JSON.parse(await readAll(stream)).metadata.name).toBe('settings');
    expect(apiserver.objects('ConfigMap', NAMESPACE).map((cm) => cm.data)).toEqual([{ a: '1' }]);

    const missing = send(client, { ':path': `/api/v1/namespaces/${NAMESPACE}/pods/nope` });
    expect((await missing.response)[':status']).toBe(404);
    expect(JSON.parse(await readAll(missing.stream))).toMatchObject({ kind: 'Status', reason: 'NotFound' });
  });

  it('streams a followed log line by line, as the apiserver writes it', async () => {
    const { stream, response } = send(client, { ':path': `/api/v1/namespaces/${NAMESPACE}/pods/trainer/log?follow=true` });
    // The headers arrive before the log has a single line.
    expect((await response)[':status']).toBe(200);
    const received = { text: '' };
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => (received.text += chunk));

    apiserver.appendLog(NAMESPACE, 'trainer', 'epoch 1 loss 2.31');
    expect(await receive(stream, received, 'epoch 1 loss 2.31\n')).toBe('epoch 1 loss 2.31\n');
    apiserver.appendLog(NAMESPACE, 'trainer', 'epoch 2 loss 1.87');
    expect(await receive(stream, received, 'epoch 2')).toBe('epoch 1 loss 2.31\nepoch 2 loss 1.87\n');
    apiserver.endLog(NAMESPACE, 'trainer');
    await once(stream, 'end');
  });

  it('streams a watch event by event', async () => {
    const { stream, response } = send(client, { ':path': `/api/v1/namespaces/${NAMESPACE}/configmaps?watch=true&labelSelector=app%3Dwatched` });
    expect((await response)[':status']).toBe(200);
    const received = { text: '' };
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => (received.text += chunk));

    await core.createNamespacedConfigMap({ namespace: NAMESPACE, body: { metadata: { name: 'first', labels: { app: 'watched' } } } });
    const first = JSON.parse((await receive(stream, received, '\n')).trim());
    expect(first).toMatchObject({ type: 'ADDED', object: { metadata: { name: 'first' } } });
    await core.deleteNamespacedConfigMap({ namespace: NAMESPACE, name: 'first' });
    const events = (await receive(stream, received, '"DELETED"'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line).type);
    expect(events).toEqual(['ADDED', 'DELETED']);
    stream.close(http2.constants.NGHTTP2_CANCEL);
  });

  it('closes the upstream request when the caller cancels a follow', async () => {
    const upstreamConnection = relay.nextConnection();
    const { stream, response } = send(client, { ':path': `/api/v1/namespaces/${NAMESPACE}/pods/notebook/log?follow=true` });
    expect((await response)[':status']).toBe(200);
    const connection = await upstreamConnection;
    expect(connection.destroyed).toBe(false);

    stream.close(http2.constants.NGHTTP2_CANCEL);
    if (!connection.destroyed) await once(connection, 'close');
    expect(connection.destroyed).toBe(true);
  });

  it('carries an exec WebSocket both ways after the switch of protocols', async () => {
    const key = randomBytes(16).toString('base64');
    const { stream, response } = send(client, {
      ':method': 'POST',
      ':path': `/api/v1/namespaces/${NAMESPACE}/pods/notebook/exec?command=cat&stdin=true&stdout=true`,
      [UPGRADE_HEADER]: '1',
      [UPGRADE_HEADERS_HEADER]: JSON.stringify({
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': key,
        'sec-websocket-protocol': 'v5.channel.k8s.io',
        authorization: 'Bearer sk-user',
      }),
    });
    const headers = await response;
    expect(headers[':status']).toBe(200);
    const upgrade = JSON.parse(String(headers[UPGRADE_RESPONSE_HEADER]));
    expect(upgrade.statusCode).toBe(101);
    expect(upgrade.headers['sec-websocket-protocol']).toBe('v5.channel.k8s.io');
    expect(upgrade.headers['sec-websocket-accept']).toBe(createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64'));
    const execRequest = apiserver.requests.find((request) => request.path.includes('/exec'));
    expect(execRequest?.headers.authorization).toBe(`Bearer ${apiserver.token}`);

    const nextFrame = serverFrames(stream);
    // Channel 0 is stdin; the pod's `cat` answers on channel 1, stdout.
    stream.write(clientFrame(0x2, Buffer.from('\x00hello from the control plane')));
    const stdout = await nextFrame();
    expect(stdout.opcode).toBe(0x2);
    expect(stdout.payload[0]).toBe(1);
    expect(stdout.payload.subarray(1).toString()).toBe('hello from the control plane');

    // v5: closing channel 0 ends stdin; the command exits with a Success status on channel 3.
    stream.write(clientFrame(0x2, Buffer.from([255, 0])));
    const status = await nextFrame();
    expect(status.payload[0]).toBe(3);
    expect(JSON.parse(status.payload.subarray(1).toString())).toMatchObject({ status: 'Success' });
    const close = await nextFrame();
    expect(close.opcode).toBe(0x8);
    stream.end(clientFrame(0x8, close.payload));
    await once(stream, 'close');
  });

  it("answers an upgrade the apiserver refuses with the apiserver's own status", async () => {
    const { stream, response } = send(client, {
      ':method': 'POST',
      ':path': `/api/v1/namespaces/${NAMESPACE}/pods/missing/exec?command=sh`,
      [UPGRADE_HEADER]: '1',
      [UPGRADE_HEADERS_HEADER]: JSON.stringify({
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': randomBytes(16).toString('base64'),
        'sec-websocket-protocol': 'v5.channel.k8s.io',
      }),
    });
    const headers = await response;
    expect(headers[':status']).toBe(404);
    expect(headers[UPGRADE_RESPONSE_HEADER]).toBeUndefined();
    expect(JSON.parse(await readAll(stream))).toMatchObject({ kind: 'Status', reason: 'NotFound' });
  });

  it('runs an upgrade only as the GET or POST it names, in a POST stream, with an Upgrade; x-mariner-* inside its headers is ignored', async () => {
    const before = apiserver.requests.length;
    const handshake = {
      connection: 'Upgrade',
      upgrade: 'websocket',
      'sec-websocket-version': '13',
      'sec-websocket-key': randomBytes(16).toString('base64'),
      'sec-websocket-protocol': 'v5.channel.k8s.io',
    };
    const refusals = [
      // Another method than an upgrade's.
      {
        ':method': 'POST',
        ':path': `/api/v1/namespaces/${NAMESPACE}/pods/trainer`,
        [UPGRADE_HEADER]: '1',
        [UPGRADE_METHOD_HEADER]: 'DELETE',
        [UPGRADE_HEADERS_HEADER]: JSON.stringify(handshake),
      },
      // Not the upgrade protocol's POST stream (what a caller's own x-mariner-upgrade header would have looked like).
      {
        ':method': 'GET',
        ':path': `/api/v1/namespaces/${NAMESPACE}/pods/trainer`,
        [UPGRADE_HEADER]: '1',
        [UPGRADE_METHOD_HEADER]: 'GET',
        [UPGRADE_HEADERS_HEADER]: JSON.stringify(handshake),
      },
      // No Upgrade among the original headers: not an upgrade at all.
      { ':method': 'POST', ':path': `/api/v1/namespaces/${NAMESPACE}/pods/trainer`, [UPGRADE_HEADER]: '1', [UPGRADE_METHOD_HEADER]: 'POST' },
    ];
    for (const headers of refusals) {
      const { stream, response } = send(client, headers);
      if (headers[':method'] === 'POST') stream.end();
      expect((await response)[':status']).toBe(400);
      expect(JSON.parse(await readAll(stream))).toMatchObject({ kind: 'Status', reason: 'BadRequest' });
    }
    expect(apiserver.requests.length).toBe(before);
    expect(apiserver.objects('Pod', NAMESPACE).map((pod) => pod.metadata.name)).toContain('trainer');

    const exec = send(client, {
      ':method': 'POST',
      ':path': `/api/v1/namespaces/${NAMESPACE}/pods/trainer/exec?command=cat&stdin=true&stdout=true`,
      [UPGRADE_HEADER]: '1',
      [UPGRADE_METHOD_HEADER]: 'GET',
      [UPGRADE_HEADERS_HEADER]: JSON.stringify({
        ...handshake,
        [UPGRADE_METHOD_HEADER]: 'DELETE',
        'x-mariner-agent-id': 'evil',
        'impersonate-user': 'system:admin',
      }),
    });
    expect(JSON.parse(String((await exec.response)[UPGRADE_RESPONSE_HEADER])).statusCode).toBe(101);
    exec.stream.close(http2.constants.NGHTTP2_CANCEL);
    const arrived = apiserver.requests.slice(before);
    expect(arrived.map((request) => request.method)).toEqual(['GET']);
    expect(Object.keys(arrived[0]!.headers).filter((name) => name.startsWith('x-mariner-') || name.startsWith('impersonate-'))).toEqual([]);
  });

  it('passes no x-mariner-* header of a plain request on to the apiserver', async () => {
    const { stream, response } = send(client, {
      ':path': `/api/v1/namespaces/${NAMESPACE}/pods/trainer`,
      'x-mariner-peer-token': 'v2.1.2.3',
      'x-mariner-anything': 'x',
    });
    expect((await response)[':status']).toBe(200);
    await readAll(stream);
    expect(Object.keys(apiserver.requests.at(-1)!.headers).filter((name) => name.startsWith('x-mariner-'))).toEqual([]);
  });

  it.skipIf(!HAS_OPENSSL)("reaches an https apiserver with the kubeconfig's CA and client certificate", async () => {
    // One self-signed certificate serves as the server's, the client's and the CA for both.
    const dir = await mkdtemp(join(tmpdir(), 'mariner-apiproxy-'));
    await promisify(execFile)('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-addext',
      'extendedKeyUsage=serverAuth,clientAuth',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ]);
    const [cert, key] = await Promise.all([readFile(join(dir, 'cert.pem')), readFile(join(dir, 'key.pem'))]);
    await rm(dir, { recursive: true, force: true });

    // TLS in front of the apiserver that refuses clients without the certificate.
    const clientSubjects: string[] = [];
    const { hostname, port } = new URL(apiserver.url);
    const front = tls.createServer({ key, cert, ca: cert, requestCert: true, rejectUnauthorized: true }, (socket) => {
      clientSubjects.push(String(socket.getPeerCertificate().subject.CN));
      const upstream = net.connect(Number(port), hostname);
      socket.pipe(upstream).pipe(socket);
      socket.on('error', () => upstream.destroy());
      upstream.on('error', () => socket.destroy());
    });
    front.listen(0, '127.0.0.1');
    await once(front, 'listening');
    const secureEnd = await startTunnelEnd(
      kubeConfigFor(`https://127.0.0.1:${(front.address() as AddressInfo).port}`, apiserver.token, { ca: cert, cert, key }),
    );
    const secureClient = http2.connect(secureEnd.url);
    try {
      const { stream, response } = send(secureClient, { ':path': `/api/v1/namespaces/${NAMESPACE}`, authorization: 'Bearer sk-user' });
      expect((await response)[':status']).toBe(200);
      expect(JSON.parse(await readAll(stream)).metadata.name).toBe(NAMESPACE);
      expect(clientSubjects).toEqual(['127.0.0.1']);
    } finally {
      secureClient.close();
      await secureEnd.close();
      await new Promise((resolve) => front.close(resolve));
    }
  });

  it('answers 502 with a Status when the apiserver cannot be reached', async () => {
    const closed = net.createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const unreachable = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise((resolve) => closed.close(resolve));
    const deadEnd = await startTunnelEnd(kubeConfigFor(unreachable, 'agent-token'));
    const deadClient = http2.connect(deadEnd.url);
    try {
      const plain = send(deadClient, { ':path': '/api/v1/pods' });
      const headers = await plain.response;
      expect(headers[':status']).toBe(502);
      expect(headers['content-type']).toBe('application/json');
      expect(JSON.parse(await readAll(plain.stream))).toMatchObject({ kind: 'Status', status: 'Failure', reason: 'ServiceUnavailable', code: 502 });

      const upgrade = send(deadClient, {
        ':method': 'POST',
        ':path': '/api/v1/namespaces/a/pods/b/exec?command=sh',
        [UPGRADE_HEADER]: '1',
        [UPGRADE_HEADERS_HEADER]: JSON.stringify({ connection: 'Upgrade', upgrade: 'websocket' }),
      });
      expect((await upgrade.response)[':status']).toBe(502);
      expect(JSON.parse(await readAll(upgrade.stream))).toMatchObject({ kind: 'Status', reason: 'ServiceUnavailable' });
    } finally {
      deadClient.close();
      await deadEnd.close();
    }
  });
});
