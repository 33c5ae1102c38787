/**
 * Issue 14: the `/v1/sessions` proxies (the Kubernetes API and notebooks, plain and upgraded) and the
 * sessions peer endpoint, attacked the ways a caller could: headers that name another method for the
 * agent to run, paths that do not decode or that climb out of an authorized namespace, compressed
 * pages that inflate without end, captured peer tokens, and `?access_token=` links from other sites.
 * The real platform, agent and tunnel, against the Kubernetes API double, whose service proxy reaches
 * a small server standing in for Jupyter; what arrived is checked where it arrived.
 */
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http, { createServer, type IncomingHttpHeaders } from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { startAgent, type Agent } from '../../agent/index.js';
import { createKubernetesExecutor } from '../../agent/kubernetesExecutor.js';
import { JOB_ID_LABEL, NOTEBOOK_BASE_PATH_ANNOTATION, NOTEBOOK_NAME_LABEL } from '../../lib/jobSpec.js';
import { silentLogger } from '../../lib/logging.js';
import { DEFAULT_ROLE_SCOPES } from '../../schema/rbac/roleScopes.js';
import { PEER_CLUSTER_HEADER, PEER_TOKEN_HEADER, peerTokens, startPeerServer } from '../../subgraphs/sessions/peers.js';
import { SESSION_COOKIE } from '../../subgraphs/sessions/sessionCookie.js';
import { kubeConfigFor, kubeRequest, startKubeApiServer, type KubeApiServer } from '../support/kubeApiServer.js';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { projectWithKey } from '../support/tenants.js';

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  webSocket: boolean;
}

/** Headers a caller adds to make the agent run something else, or to reach the cluster with more than it was given. */
const SMUGGLED: Record<string, string> = {
  'x-mariner-upgrade': '1',
  'x-mariner-upgrade-method': 'DELETE',
  'x-mariner-upgrade-headers': JSON.stringify({ 'impersonate-user': 'system:admin', 'x-mariner-upgrade-method': 'DELETE' }),
  'x-mariner-peer-cluster': 'cluster-elsewhere',
  'x-mariner-agent-id': 'agent-evil',
  'impersonate-user': 'system:admin',
  'impersonate-group': 'system:masters',
  'x-http-method-override': 'DELETE',
  'x-forwarded-for': '10.9.9.9',
  'openai-beta': 'assistants=v2',
};

/** The smuggled (or caller-only) headers among those that arrived. */
const leaked = (headers: IncomingHttpHeaders) =>
  Object.keys(headers).filter(
    (name) =>
      name.startsWith('x-mariner-') ||
      name.startsWith('impersonate-') ||
      name.startsWith('openai-') ||
      ['x-http-method-override', 'x-forwarded-for', 'origin', 'referer'].includes(name),
  );

/** Jupyter's stand-in: records what reached it (WebSockets with their method); JSON echoes, pages, and compressed pages. */
async function startFakeJupyter(basePath: () => string) {
  const seen: Seen[] = [];
  const page = (base: string) => `<html><body><a href="${base}tree">files</a></body></html>`;
  // 20 MiB of HTML in 20 KiB of gzip, and 64 MiB in 12 KiB of brotli.
  const gzipBomb = zlib.gzipSync(Buffer.concat([Buffer.from('<html><body>'), Buffer.alloc(20 << 20, 0x20)]));
  const brotliBomb = zlib.brotliCompressSync(Buffer.concat([Buffer.from('<html><body>'), Buffer.alloc(64 << 20, 0x20)]), {
    params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 1 },
  });
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? 'GET', url: req.url ?? '', headers: req.headers, webSocket: false });
    const base = basePath();
    const html = (encoding: string, body: Buffer) => res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-encoding': encoding }).end(body);
    if (req.url === `${base}bomb.html`) return html('gzip', gzipBomb);
    if (req.url === `${base}bomb-br.html`) return html('br', brotliBomb);
    if (req.url === `${base}small-gzip.html`) return html('gzip', zlib.gzipSync(page(base)));
    if (req.url === `${base}small-br.html`) return html('br', zlib.brotliCompressSync(page(base)));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ method: req.method, url: req.url }));
  });
  const sockets = new WebSocketServer({ server });
  sockets.on('connection', (ws, req) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, webSocket: true });
    ws.on('message', (data) => ws.send(`echo ${data}`));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    page,
    async close() {
      for (const client of sockets.clients) client.terminate();
      sockets.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A request sent exactly as written (fetch would resolve `..` and `%2e%2e` before sending). */
function rawRequest(
  base: string,
  method: string,
  target: string,
  headers: Record<string, string>,
): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ hostname, port, method, path: target, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: '' });
    });
    req.on('error', reject);
    req.end();
  });
}

/** The status a refused WebSocket handshake gets. */
async function refusedUpgrade(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  const ws = new WebSocket(url, ['v5.channel.k8s.io'], { headers });
  ws.on('error', () => undefined);
  const [, response] = (await once(ws, 'unexpected-response')) as [unknown, http.IncomingMessage];
  let body = '';
  for await (const chunk of response) body += String(chunk);
  return { status: response.statusCode ?? 0, body };
}

async function openWebSocket(url: string, protocols: string[], headers: Record<string, string>): Promise<WebSocket> {
  const ws = new WebSocket(url, protocols, { headers });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`WebSocket refused: ${res.statusCode}`)));
  });
  return ws;
}

const cookieOf = (response: Response) => response.headers.getSetCookie().find((c) => c.startsWith(`${SESSION_COOKIE}=`));

describe('the /v1/sessions proxies and the peer endpoint refuse what would reach further than authorized', () => {
  let kube: KubeApiServer;
  let jupyter: Awaited<ReturnType<typeof startFakeJupyter>>;
  let t: TestPlatform;
  let agent: Agent;
  let scopesDir: string;
  let clusterId: string;
  /** Reads team-a (pods and notebooks) and nothing more: its role's scopes are read-only. */
  let reader: { key: string };
  /** An organization owner whose project has team-w: may write there (exec included). */
  let writer: { key: string };
  let basePath = '';
  const as = (key: string) => ({ authorization: `Bearer ${key}` });
  const sessions = () => `${t.url}/v1/sessions/${clusterId}`;
  const notebook = () => `${sessions()}/v1/services/notebooks/lab/team-a`;

  const kubeApi = (method: string, apiPath: string, body?: unknown) => kubeRequest(kube, method, apiPath, body);

  async function runningPod(namespace: string, name: string): Promise<void> {
    await kubeApi('POST', `/api/v1/namespaces/${namespace}/pods`, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace },
      spec: { containers: [{ name: 'main', image: 'busybox' }] },
    });
    const pod = await kubeApi('GET', `/api/v1/namespaces/${namespace}/pods/${name}`);
    await kubeApi('PUT', `/api/v1/namespaces/${namespace}/pods/${name}/status`, { ...pod, status: { ...pod.status, phase: 'Running' } });
  }

  const podNames = (namespace: string) => kube.objects('Pod', namespace).map((p) => p.metadata.name as string);

  beforeAll(async () => {
    kube = await startKubeApiServer({ nodes: [{ name: 'gpu-node', gpus: 1 }] });
    for (const ns of ['team-a', 'team-b', 'team-w'])
      await kubeApi('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    await runningPod('team-a', 'trainer');
    await runningPod('team-b', 'secret-trainer');
    await runningPod('team-w', 'worker');
    jupyter = await startFakeJupyter(() => basePath);

    // Project roles read only; organization owners keep the default scopes.
    scopesDir = mkdtempSync(path.join(tmpdir(), 'mariner-scopes-'));
    const readOnly = ['api.fine_tuning.jobs.read', 'api.workspaces.notebooks.read', 'api.k8s.clusterscope.read', 'api.model.read', 'api.files.read'];
    writeFileSync(path.join(scopesDir, 'roles.json'), JSON.stringify({ ...DEFAULT_ROLE_SCOPES, projectOwner: readOnly, projectMember: readOnly }));
    // Exec on (MARINER_SESSIONS_EXEC), so the upgrade path is exercised; off by default (sessionsAllowList.test.ts).
    t = await startTestPlatform({ config: { roleScopesFile: path.join(scopesDir, 'roles.json'), sessions: { allowExec: true } } });

    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "k8s" }) { registrationKey cluster { id } } }');
    clusterId = registerCluster.cluster.id;
    agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: registerCluster.registrationKey,
      executor: await createKubernetesExecutor({ kubeConfig: kubeConfigFor(kube), logger: silentLogger() }),
      backoff: { initialMs: 10, maxMs: 50 },
      logger: silentLogger(),
    });
    await agent.whenConnected();
    reader = await projectWithKey(t, 'readers', { role: 'READER', assignments: [{ clusterId, namespace: 'team-a' }] });
    writer = await projectWithKey(t, 'writers', { role: 'OWNER', assignments: [{ clusterId, namespace: 'team-w' }] });
    await projectWithKey(t, 'victims', { role: 'READER', assignments: [{ clusterId, namespace: 'team-b' }] });

    // A notebook's Service, as the executor would create it, served by the stand-in.
    basePath = `/v1/sessions/${clusterId}/v1/services/notebooks/lab/team-a/`;
    await kubeApi('POST', '/api/v1/namespaces/team-a/services', {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: {
        name: 'mariner-nb-sec',
        namespace: 'team-a',
        labels: { [NOTEBOOK_NAME_LABEL]: 'lab', [JOB_ID_LABEL]: 'nb-sec' },
        annotations: { [NOTEBOOK_BASE_PATH_ANNOTATION]: basePath },
      },
      spec: { ports: [{ port: 8888 }] },
    });
    kube.serveService('team-a', 'mariner-nb-sec', 8888, jupyter.url);
  }, 60_000);

  afterAll(async () => {
    await agent?.close();
    await t?.close();
    await jupyter?.close();
    await kube?.close();
    if (scopesDir) rmSync(scopesDir, { recursive: true, force: true });
  });

  describe('headers a caller sends never name what the agent runs, on every proxy route', () => {
    it('Kubernetes API: a read-only key naming x-mariner-upgrade-method: DELETE reads the pod and deletes nothing; the apiserver gets the allow-listed headers only', async () => {
      const before = kube.requests.length;
      const response = await fetch(`${sessions()}/api/v1/namespaces/team-a/pods/trainer`, {
        headers: { ...as(reader.key), ...SMUGGLED, accept: 'application/json', 'user-agent': 'kubectl/v1.31.0', cookie: 'session=abc' },
      });
      expect(response.status).toBe(200);
      expect((await response.json()).metadata.name).toBe('trainer');
      expect(podNames('team-a')).toContain('trainer');
      const arrived = kube.requests.slice(before);
      expect(arrived.map((r) => `${r.method} ${r.path}`)).toEqual(['GET /api/v1/namespaces/team-a/pods/trainer']);
      expect(leaked(arrived[0]!.headers)).toEqual([]);
      expect(arrived[0]!.headers).toMatchObject({ authorization: `Bearer ${kube.token}`, accept: 'application/json', 'user-agent': 'kubectl/v1.31.0' });
      expect(arrived[0]!.headers.cookie).toBeUndefined();
    });

    it('Kubernetes API upgrade: an exec carries the WebSocket handshake and nothing smuggled; it runs as the GET it was; another method is refused', async () => {
      const before = kube.requests.length;
      const url = `${sessions().replace('http:', 'ws:')}/api/v1/namespaces/team-w/pods/worker/exec?command=sh&stdin=true&stdout=true`;
      const ws = await openWebSocket(url, ['v5.channel.k8s.io'], { ...as(writer.key), ...SMUGGLED });
      const reply = new Promise<Buffer>((resolve) => ws.once('message', (data) => resolve(data as Buffer)));
      ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('ls')]));
      expect((await reply).subarray(1).toString()).toBe('ls');
      ws.close();
      const exec = kube.requests.slice(before).filter((r) => r.path.includes('/exec'));
      expect(exec.map((r) => r.method)).toEqual(['GET']);
      expect(leaked(exec[0]!.headers)).toEqual([]);
      expect(exec[0]!.headers).toMatchObject({ authorization: `Bearer ${kube.token}`, upgrade: 'websocket', 'sec-websocket-protocol': 'v5.channel.k8s.io' });

      // An upgrade is a GET (WebSocket) or a POST (SPDY): a DELETE with Upgrade headers never reaches the cluster.
      const handshake = {
        ...as(writer.key),
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
      };
      const deleting = await rawRequest(t.url, 'DELETE', `/v1/sessions/${clusterId}/api/v1/namespaces/team-w/pods/worker/exec?command=sh`, handshake);
      expect(deleting.status).toBe(400);
      expect(kube.requests.filter((r) => r.method === 'DELETE')).toEqual([]);
      expect(podNames('team-w')).toContain('worker');
    });

    it('notebooks: a read-only key naming x-mariner-upgrade-method: DELETE reaches Jupyter as its GET, with browser headers and its own cookie only', async () => {
      const before = jupyter.seen.length;
      const response = await fetch(`${notebook()}/api/contents`, {
        headers: { ...as(reader.key), ...SMUGGLED, cookie: '_xsrf=abc', 'x-xsrftoken': 'abc', 'if-none-match': '"v1"', origin: t.url },
      });
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({ method: 'GET', url: `${basePath}api/contents` });
      const arrived = jupyter.seen.slice(before);
      expect(arrived.map((s) => s.method)).toEqual(['GET']);
      expect(leaked(arrived[0]!.headers)).toEqual([]);
      expect(arrived[0]!.headers).toMatchObject({ cookie: '_xsrf=abc', 'x-xsrftoken': 'abc', 'if-none-match': '"v1"' });
      const proxied = kube.requests.filter((r) => r.path.includes('/proxy/')).at(-1)!;
      expect(proxied.method).toBe('GET');
      expect(leaked(proxied.headers)).toEqual([]);
      expect(proxied.headers.authorization).toBe(`Bearer ${kube.token}`);
    });

    it('notebook upgrade: a kernel WebSocket reaches Jupyter as a GET with the handshake and nothing smuggled', async () => {
      const before = jupyter.seen.length;
      const ws = await openWebSocket(`${notebook().replace('http:', 'ws:')}/api/kernels/k1/channels`, [], {
        ...as(reader.key),
        ...SMUGGLED,
        cookie: '_xsrf=abc',
      });
      const reply = new Promise<string>((resolve) => ws.once('message', (data) => resolve(String(data))));
      ws.send('1+1');
      expect(await reply).toBe('echo 1+1');
      ws.close();
      const arrived = jupyter.seen.slice(before).filter((s) => s.webSocket);
      expect(arrived.map((s) => s.method)).toEqual(['GET']);
      expect(leaked(arrived[0]!.headers)).toEqual([]);
      expect(arrived[0]!.headers).toMatchObject({ upgrade: 'websocket', cookie: '_xsrf=abc' });
      expect(arrived[0]!.headers.authorization).toBeUndefined();
    });
  });

  it('a malformed % in a path answers 401 to an anonymous caller and a clear 400 (no stack) once authenticated, on both proxies and their upgrades', async () => {
    const before = kube.requests.length;
    const kubePath = `${sessions()}/api/v1/namespaces/team-a/pods/%E0%A4%A`;
    expect((await fetch(kubePath)).status).toBe(401);
    const bad = await fetch(kubePath, { headers: as(reader.key) });
    expect(bad.status).toBe(400);
    const body = await bad.text();
    expect(JSON.parse(body)).toMatchObject({ kind: 'Status', code: 400, message: expect.stringContaining('malformed percent-encoding') });
    expect(body).not.toMatch(/\bat .*\.(ts|js):\d+/);
    expect((await fetch(kubePath, { headers: as('sk-not-a-key') })).status).toBe(401);

    const notebookPath = `${notebook()}/api/contents/%zz`;
    expect((await fetch(notebookPath)).status).toBe(401);
    const badNotebook = await fetch(notebookPath, { headers: as(reader.key) });
    expect(badNotebook.status).toBe(400);
    expect(await badNotebook.json()).toMatchObject({ error: { code: 'BAD_USER_INPUT', message: expect.stringContaining('malformed percent-encoding') } });

    const execUrl = `${sessions().replace('http:', 'ws:')}/api/v1/namespaces/team-w/pods/%zz/exec?command=sh`;
    expect((await refusedUpgrade(execUrl, {})).status).toBe(401);
    const refused = await refusedUpgrade(execUrl, as(writer.key));
    expect(refused.status).toBe(400);
    expect(JSON.parse(refused.body)).toMatchObject({ code: 400, message: expect.stringContaining('malformed percent-encoding') });
    expect(kube.requests.length).toBe(before);
  });

  it('dot segments and encoded slashes are refused with 400 before anything is forwarded: no path climbs from team-a to team-b', async () => {
    const beforeKube = kube.requests.length;
    const beforeJupyter = jupyter.seen.length;
    const climbs = [
      `/v1/sessions/${clusterId}/api/v1/namespaces/team-a/../team-b/pods`,
      `/v1/sessions/${clusterId}/api/v1/namespaces/team-a/%2e%2e/team-b/pods`,
      `/v1/sessions/${clusterId}/api/v1/namespaces/team-a/%2E%2E/team-b/pods`,
      `/v1/sessions/${clusterId}/api/v1/namespaces/team-a/pods/..%2F..%2Fteam-b%2Fpods`,
      `/v1/sessions/${clusterId}/api/v1/namespaces/team-a/./pods`,
      `/v1/sessions/${clusterId}/api/v1/namespaces/team-a/pods/..%5C..%5Cteam-b`,
      `/v1/sessions/${clusterId}/v1/services/notebooks/lab/team-a/${'..%2F'.repeat(20)}api%2Fv1%2Fnamespaces%2Fteam-b%2Fpods`,
      `/v1/sessions/${clusterId}/v1/services/notebooks/lab/team-a/%2e%2e/%2e%2e/lab/team-b/api/contents`,
    ];
    for (const target of climbs) {
      const answer = await rawRequest(t.url, 'GET', target, as(reader.key));
      expect({ target, status: answer.status }).toEqual({ target, status: 400 });
      expect(answer.body).toContain('is refused');
      expect(answer.body).not.toContain('secret-trainer');
    }
    expect(kube.requests.length).toBe(beforeKube);
    expect(jupyter.seen.length).toBe(beforeJupyter);
    // The same through an upgrade.
    const upgrade = await rawRequest(
      t.url,
      'GET',
      `/v1/sessions/${clusterId}/api/v1/namespaces/team-w/pods/worker/%2e%2e/%2e%2e/%2e%2e/team-b/pods/secret-trainer/exec?command=sh`,
      {
        ...as(writer.key),
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
      },
    );
    expect(upgrade.status).toBe(400);
    expect(kube.requests.length).toBe(beforeKube);
  });

  it('a notebook page that decompresses past 16 MiB answers 502 with a clear message; a small compressed page still gets its links restored', async () => {
    for (const name of ['bomb.html', 'bomb-br.html']) {
      const response = await fetch(`${notebook()}/${name}`, { headers: as(reader.key) });
      expect({ name, status: response.status }).toEqual({ name, status: 502 });
      expect(await response.json()).toMatchObject({ error: { message: expect.stringContaining('decompresses to more than 16 MiB') } });
    }
    for (const name of ['small-gzip.html', 'small-br.html']) {
      const response = await fetch(`${notebook()}/${name}`, { headers: as(reader.key) });
      expect(response.status).toBe(200);
      expect(await response.text()).toBe(jupyter.page(basePath));
    }
  });

  it('a captured peer token serves its one request only: not another method, path or cluster, and not twice', async () => {
    const secret = readFileSync(path.join(t.dataDir, 'internal-token-secret'), 'utf8').trim();
    const tokens = peerTokens(secret);
    const peer = await startPeerServer({ registry: t.platform.sessions.registry, tokens, host: '127.0.0.1', port: 0, logger: silentLogger() });
    const session = http2.connect(`http://127.0.0.1:${peer.port}`);
    session.on('error', () => undefined);
    const send = (headers: http2.OutgoingHttpHeaders) =>
      new Promise<number>((resolve, reject) => {
        const stream = session.request(headers, { endStream: true });
        stream.on('response', (h) => resolve(Number(h[':status'])));
        stream.on('error', reject);
        stream.resume();
      });
    try {
      const request = { ':method': 'GET', ':path': '/k8s/api/v1/namespaces/team-a/pods/trainer' };
      const captured = tokens.mint(clusterId, request);
      const before = kube.requests.length;
      const replays = [
        { ...request, ':method': 'DELETE' },
        { ...request, ':path': '/k8s/api/v1/namespaces/team-b/pods/secret-trainer' },
        { ...request, 'x-mariner-upgrade': '1', 'x-mariner-upgrade-method': 'DELETE' },
      ];
      for (const headers of replays) expect(await send({ ...headers, [PEER_CLUSTER_HEADER]: clusterId, [PEER_TOKEN_HEADER]: captured })).toBe(401);
      expect(await send({ ...request, [PEER_CLUSTER_HEADER]: 'cluster-elsewhere', [PEER_TOKEN_HEADER]: captured })).toBe(401);
      expect(kube.requests.length).toBe(before);
      expect(await send({ ...request, [PEER_CLUSTER_HEADER]: clusterId, [PEER_TOKEN_HEADER]: captured })).toBe(200);
      expect(await send({ ...request, [PEER_CLUSTER_HEADER]: clusterId, [PEER_TOKEN_HEADER]: captured })).toBe(401);
      expect(kube.requests.slice(before).map((r) => `${r.method} ${r.path}`)).toEqual(['GET /api/v1/namespaces/team-a/pods/trainer']);
      expect(podNames('team-a')).toContain('trainer');
    } finally {
      session.destroy();
      await peer.close();
    }
  });

  it('?access_token= from another site does not sign the browser in (login CSRF): it asks first; typed, pasted or same-origin links sign in at once', async () => {
    const before = jupyter.seen.length;
    const link = `${notebook()}/lab?access_token=${reader.key}`;
    const elsewhere: Record<string, string>[] = [
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'same-site' },
      { referer: 'https://evil.example/page' },
      { origin: 'https://evil.example' },
    ];
    for (const from of elsewhere) {
      const response = await fetch(link, { headers: from, redirect: 'manual' });
      expect({ from, status: response.status }).toEqual({ from, status: 200 });
      expect(cookieOf(response)).toBeUndefined();
      expect(response.headers.get('content-type')).toMatch(/^text\/html/);
      expect(response.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
      const page = await response.text();
      expect(page).toContain(`href="/v1/sessions/${clusterId}/v1/services/notebooks/lab/team-a/lab?access_token=${reader.key}"`);
      expect(page).toContain('Continue only if you opened it yourself');
    }
    // A form on another site posting the token: refused outright.
    const posted = await fetch(link, { method: 'POST', headers: { 'sec-fetch-site': 'cross-site' }, body: 'x' });
    expect(posted.status).toBe(403);
    expect(cookieOf(posted)).toBeUndefined();
    expect(jupyter.seen.length).toBe(before);

    // Typed or pasted (none), a link on our own pages (same-origin, as the page's own link), or no browser at all.
    const ours: Record<string, string>[] = [{ 'sec-fetch-site': 'none' }, { 'sec-fetch-site': 'same-origin' }, {}];
    for (const from of ours) {
      const response = await fetch(link, { headers: from, redirect: 'manual' });
      expect({ from, status: response.status }).toEqual({ from, status: 303 });
      expect(response.headers.get('location')).toBe(`/v1/sessions/${clusterId}/v1/services/notebooks/lab/team-a/lab`);
      const cookie = cookieOf(response)!.split(';')[0]!;
      const next = await fetch(`${notebook()}/api/status`, { headers: { cookie } });
      expect(await next.json()).toEqual({ method: 'GET', url: `${basePath}api/status` });
    }
  });
});
