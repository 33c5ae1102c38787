import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { startAgent, type Agent } from '../agent/index.js';
import { jobObjectName } from '../agent/kubernetes/jobManifests.js';
import { createLoginTickets } from '../lib/loginTicket.js';
import { silentLogger } from '../lib/logging.js';
import { createSessionCookies, SESSION_COOKIE } from '../subgraphs/sessions/sessionCookie.js';
import { kubeConfigFor, startKubeApiServer, type KubeApiServer } from './support/kubeApiServer.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';
import { waitFor } from './support/until.js';

/**
 * Notebooks in a browser through the session manager: the real gateway, sessions and agent tunnel, the
 * Kubernetes executor against the Kubernetes API test double, whose service proxy forwards to a small
 * HTTP and WebSocket server standing in for Jupyter.
 */

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

/** Jupyter's stand-in: echoes what reached it; a page with links and a redirect under its base path; a WebSocket echo. */
async function startFakeJupyter(basePath: () => string): Promise<{ url: string; seen: Seen[]; server: Server; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? 'GET', url: req.url ?? '', headers: req.headers });
    const base = basePath();
    if (req.url === base) return void res.writeHead(302, { location: `${base}lab` }).end();
    if (req.url === `${base}lab`) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'set-cookie': '_xsrf=abc; Path=/' });
      return void res.end(
        `<html><head><script src="${base}static/lab.js"></script></head><body><a href="${base}tree">files</a><a href="notes.ipynb">n</a></body></html>`,
      );
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ method: req.method, url: req.url }));
  });
  const sockets = new WebSocketServer({ server });
  sockets.on('connection', (ws, req) => {
    seen.push({ method: 'WEBSOCKET', url: req.url ?? '', headers: req.headers });
    ws.on('message', (data) => ws.send(`${req.url} ${data}`));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    server,
    async close() {
      for (const client of sockets.clients) client.terminate();
      sockets.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

const cookieOf = (response: Response): string | undefined =>
  response.headers
    .getSetCookie()
    .find((c) => c.startsWith(`${SESSION_COOKIE}=`))
    ?.split(';')[0];

async function webSocketEcho(url: string, headers: Record<string, string>, message: string): Promise<string> {
  const ws = new WebSocket(url, { headers });
  try {
    await once(ws, 'open');
    ws.send(message);
    const [reply] = await once(ws, 'message');
    return String(reply);
  } finally {
    ws.close();
  }
}

/** The status a refused WebSocket handshake gets. */
async function refusedUpgrade(url: string, headers: Record<string, string>): Promise<number> {
  const ws = new WebSocket(url, { headers });
  ws.on('error', () => undefined);
  const [, response] = await once(ws, 'unexpected-response');
  return response.statusCode;
}

describe('notebooks through /v1/sessions (browser access)', () => {
  let kube: KubeApiServer;
  let t: TestPlatform;
  let agent: Agent;
  let localAgent: Agent;
  let jupyter: Awaited<ReturnType<typeof startFakeJupyter>>;
  let kubeconfigDir: string;
  let clusterId: string;
  let localClusterId: string;
  let teamA: { key: string; projectId: string };
  let teamB: { key: string };
  let notebookId: string;
  let basePath = '';
  const as = (key: string) => ({ authorization: `Bearer ${key}` });
  /** The notebook's public path, by name (LLMariner), in namespace team-a. */
  const notebook = () => `${t.url}/v1/sessions/${clusterId}/v1/services/notebooks/lab/team-a`;
  const jupyterRequests = () => jupyter.seen.length;

  beforeAll(async () => {
    kube = await startKubeApiServer();
    const core = kubeConfigFor(kube).makeApiClient(CoreV1Api);
    for (const ns of ['team-a', 'team-b']) await core.createNamespace({ body: { metadata: { name: ns } } });
    jupyter = await startFakeJupyter(() => basePath);
    // A short decision cache, so a revoked key is refused within the test.
    t = await startTestPlatform({ config: { jobs: { dispatchIntervalMs: 200 }, sessions: { authCacheMs: 200 } } });
    kubeconfigDir = mkdtempSync(path.join(tmpdir(), 'mariner-kubeconfig-'));
    writeFileSync(path.join(kubeconfigDir, 'config'), kubeConfigFor(kube).exportConfig());
    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "gpu-cluster" }) { registrationKey cluster { id } } }');
    clusterId = registerCluster.cluster.id;
    process.env['MARINER_RUNTIMES'] = 'off';
    agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: registerCluster.registrationKey,
      executor: 'kubernetes',
      kubeconfig: path.join(kubeconfigDir, 'config'),
      jobs: { kubernetes: { pollIntervalMs: 100 } },
      logger: silentLogger(),
    });
    await agent.whenConnected();
    // A second cluster whose agent runs the local executor (no Kubernetes, so no notebooks).
    const { registerCluster: local } = await t.gqlOk('mutation { registerCluster(input: { name: "laptop" }) { registrationKey cluster { id } } }');
    localClusterId = local.cluster.id;
    localAgent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: local.registrationKey,
      executor: 'local',
      cacheDir: kubeconfigDir,
      logger: silentLogger(),
    });
    await localAgent.whenConnected();

    teamA = await projectWithKey(t, 'team-a', {
      assignments: [
        { clusterId, namespace: 'team-a' },
        { clusterId: localClusterId, namespace: 'laptop-a' },
      ],
    });
    teamB = await projectWithKey(t, 'team-b', { assignments: [{ clusterId, namespace: 'team-b' }] });

    const created = await fetch(`${t.url}/v1/workspaces/notebooks`, {
      method: 'POST',
      headers: { ...as(teamA.key), 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'lab', image: { type: 'jupyter-lab-base' }, additional_exposed_ports: [6006] }),
    });
    expect(created.status).toBe(200);
    notebookId = ((await created.json()) as { id: string }).id;
    // The Service the executor created; the test says where its endpoints are (no pods run on the double).
    const service: any = await waitFor(
      async () => kube.objects('Service', 'team-a').find((s) => s.metadata.name === jobObjectName(notebookId)),
      Boolean,
      "the notebook's Service",
    );
    basePath = service.metadata.annotations['mariner.dev/jupyter-base-path'];
    for (const port of [8888, 6006]) kube.serveService('team-a', service.metadata.name, port, jupyter.url);
  }, 60_000);
  afterAll(async () => {
    delete process.env['MARINER_RUNTIMES'];
    await localAgent?.close();
    await agent?.close();
    await t?.close();
    await jupyter?.close();
    await kube?.close();
    if (kubeconfigDir) rmSync(kubeconfigDir, { recursive: true, force: true });
  });

  it('Jupyter runs under the public path of the notebook, which its Service announces', () => {
    expect(basePath).toBe(`/v1/sessions/${clusterId}/v1/services/notebooks/lab/team-a/`);
    const deployment = kube.objects('Deployment', 'team-a').find((d) => d.metadata.name === jobObjectName(notebookId));
    expect(deployment.spec.template.spec.containers[0].args).toContain(`--ServerApp.base_url=${basePath}`);
  });

  it('a GET with a Bearer key reaches Jupyter with the rest of the path and the query, without the credential, and sets the session cookie', async () => {
    const response = await fetch(`${notebook()}/api/contents/work?type=notebook&token=jupyter-token`, { headers: { ...as(teamA.key), cookie: '_xsrf=abc' } });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ method: 'GET', url: `${basePath}api/contents/work?type=notebook&token=jupyter-token` });
    const reached = jupyter.seen.at(-1)!;
    expect(reached.headers['authorization']).toBeUndefined();
    // Jupyter's own cookies go to it; the platform's session does not.
    expect(reached.headers['cookie']).toBe('_xsrf=abc');
    const setCookie = response.headers.getSetCookie().find((c) => c.startsWith(`${SESSION_COOKIE}=`))!;
    expect(setCookie).toMatch(/; Max-Age=86400; Path=\/v1\/sessions; HttpOnly; SameSite=Lax$/);
    // The cookie holds no readable credential.
    expect(setCookie).not.toContain(teamA.key);
    expect(Buffer.from(setCookie.split(';')[0]!.split('=')[1]!, 'base64url').toString('latin1')).not.toContain(teamA.key);
    // The cluster saw the agent's credentials only.
    expect(kube.requests.filter((r) => r.path.includes('/proxy/')).every((r) => r.headers['authorization'] === `Bearer ${kube.token}`)).toBe(true);
  });

  it("the notebook's id names it too, and /8888 is Jupyter's port; another port gets the rest of the path and its public prefix", async () => {
    const byId = await fetch(`${t.url}/v1/sessions/${clusterId}/v1/services/notebooks/${notebookId}/team-a/8888/api/status`, { headers: as(teamA.key) });
    expect(await byId.json()).toMatchObject({ url: `${basePath}api/status` });
    const other = await fetch(`${notebook()}/6006/runs/1?x=y`, { method: 'POST', headers: as(teamA.key), body: 'data' });
    expect(await other.json()).toEqual({ method: 'POST', url: '/runs/1?x=y' });
    expect(jupyter.seen.at(-1)!.headers['x-forwarded-prefix']).toBe(`/v1/sessions/${clusterId}/v1/services/notebooks/lab/team-a/6006`);
  });

  it("Jupyter's pages and redirects keep their public links (the apiserver's proxy rewrote them)", async () => {
    const redirect = await fetch(`${notebook()}/`, { headers: as(teamA.key), redirect: 'manual' });
    expect(redirect.status).toBe(302);
    expect(redirect.headers.get('location')).toBe(`${basePath}lab`);
    const page = await fetch(`${notebook()}/lab`, { headers: as(teamA.key) });
    expect(await page.text()).toBe(
      `<html><head><script src="${basePath}static/lab.js"></script></head><body><a href="${basePath}tree">files</a><a href="notes.ipynb">n</a></body></html>`,
    );
    // Jupyter's cookie and the session cookie both reach the browser.
    expect(page.headers.getSetCookie().map((c) => c.split('=')[0])).toEqual(['_xsrf', SESSION_COOKIE]);
  });

  it('a kernel WebSocket round-trips, with a Bearer key or with the session cookie alone', async () => {
    const ws = `${notebook().replace('http:', 'ws:')}/api/kernels/k1/channels?session_id=s1`;
    expect(await webSocketEcho(ws, as(teamA.key), 'execute 1+1')).toBe(`${basePath}api/kernels/k1/channels?session_id=s1 execute 1+1`);
    const cookie = cookieOf(await fetch(`${notebook()}/api/status`, { headers: as(teamA.key) }))!;
    expect(await webSocketEcho(ws, { cookie }, 'execute 2+2')).toBe(`${basePath}api/kernels/k1/channels?session_id=s1 execute 2+2`);
    expect(jupyter.seen.at(-1)!.headers['cookie']).toBeUndefined();
    expect(await refusedUpgrade(ws, {})).toBe(401);
  });

  it('a browser opens the notebook with ?access_token= once, then the cookie alone; a tampered, expired, cross-site or revoked cookie is refused', async () => {
    const { createApiKey } = await t.gqlOk('mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { id } } }', {
      input: { name: 'browser', projectId: teamA.projectId, isServiceAccount: true, role: 'READER' },
    });
    const before = jupyterRequests();
    const first = await fetch(`${notebook()}/lab?access_token=${createApiKey.secret}&reset=1`, { redirect: 'manual' });
    expect(first.status).toBe(303);
    expect(first.headers.get('location')).toBe(`/v1/sessions/${clusterId}/v1/services/notebooks/lab/team-a/lab?reset=1`);
    expect(jupyterRequests()).toBe(before);
    const cookie = cookieOf(first)!;
    expect(cookie).toBeDefined();

    const later = await fetch(`${notebook()}/api/contents`, { headers: { cookie: `_xsrf=abc; ${cookie}` } });
    expect(later.status).toBe(200);
    expect(await later.json()).toMatchObject({ url: `${basePath}api/contents` });
    expect(cookieOf(later)).toBeUndefined();

    // One byte changed in the sealed value: refused, and the browser told to drop it.
    const value = cookie.split('=')[1]!;
    const tampered = `${SESSION_COOKIE}=${value.slice(0, 20)}${value[20] === 'A' ? 'B' : 'A'}${value.slice(21)}`;
    const refused = await fetch(`${notebook()}/api/contents`, { headers: { cookie: tampered } });
    expect(refused.status).toBe(401);
    expect(refused.headers.getSetCookie()[0]).toMatch(new RegExp(`^${SESSION_COOKIE}=; Max-Age=0`));
    // Sealed with the platform's key, but past its day.
    const cookies = createSessionCookies(readFileSync(path.join(t.dataDir, 'internal-token-secret'), 'utf8').trim());
    const expired = cookies.seal({ authorization: `Bearer ${teamA.key}`, organizationId: null, projectId: null }, Date.now() - 25 * 3600 * 1000);
    expect((await fetch(`${notebook()}/api/contents`, { headers: { cookie: `${SESSION_COOKIE}=${expired}` } })).status).toBe(401);
    // Another site's page cannot ride on the cookie.
    const crossSite = await fetch(`${notebook()}/api/contents`, { method: 'POST', headers: { cookie, origin: 'https://evil.example' } });
    expect(crossSite.status).toBe(403);
    expect(jupyterRequests()).toBe(before + 1);

    // The key is deleted: its cookie stops working (each request is authorized again).
    await t.gqlOk('mutation($id: ID!) { deleteApiKey(id: $id) { id } }', { id: createApiKey.apiKey.id });
    await waitFor(
      () => fetch(`${notebook()}/api/contents`, { headers: { cookie } }).then((r) => r.status),
      (status) => status === 401,
      'the revoked key to be refused',
    );
  });

  it('a sign-in ticket from POST /v1/sessions/login_tickets signs a browser in once, to its notebook only, without the key in any address', async () => {
    const mint = (body: unknown, headers: Record<string, string> = as(teamA.key)) =>
      fetch(`${t.url}/v1/sessions/login_tickets`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const lab = `/v1/sessions/${clusterId}/v1/services/notebooks/lab/team-a/lab?reset=1`;
    const minted = await mint({ path: lab });
    expect(minted.status).toBe(201);
    const { ticket, url, expires_at } = (await minted.json()) as { ticket: string; url: string; expires_at: number };
    expect(url).toBe(`/v1/sessions/${clusterId}/v1/services/notebooks/lab/team-a/lab?reset=1&login_ticket=${ticket}`);
    expect(expires_at).toBeGreaterThan(Date.now() / 1000);
    expect(expires_at).toBeLessThanOrEqual(Date.now() / 1000 + 60);
    // Nobody holding the link can read the key in it.
    expect(url).not.toContain(teamA.key);
    expect(Buffer.from(ticket, 'base64url').toString('latin1')).not.toContain(teamA.key);

    const before = jupyterRequests();
    const first = await fetch(`${t.url}${url}`, { headers: { 'sec-fetch-site': 'none' }, redirect: 'manual' });
    expect(first.status).toBe(303);
    expect(first.headers.get('location')).toBe(`/v1/sessions/${clusterId}/v1/services/notebooks/lab/team-a/lab?reset=1`);
    const cookie = cookieOf(first)!;
    expect(cookie).toBeDefined();
    expect(await (await fetch(`${notebook()}/api/status`, { headers: { cookie } })).json()).toEqual({ method: 'GET', url: `${basePath}api/status` });
    expect(jupyterRequests()).toBe(before + 1);

    // Used: a second visit (another browser, a copied link) is refused, and says what to do.
    const again = await fetch(`${t.url}${url}`, { headers: { 'sec-fetch-site': 'none' }, redirect: 'manual' });
    expect(again.status).toBe(401);
    expect(cookieOf(again)).toBeUndefined();
    expect(await again.json()).toMatchObject({
      error: { code: 'UNAUTHENTICATED', message: expect.stringMatching(/already used or has expired.*mariner notebooks open/) },
    });

    // Any port of its notebook, but no other notebook, even in the same namespace.
    const forPort = (await (await mint({ path: `/v1/sessions/${clusterId}/v1/services/notebooks/lab/team-a/6006/` })).json()) as { ticket: string };
    const otherNotebook = await fetch(`${t.url}/v1/sessions/${clusterId}/v1/services/notebooks/twin/team-a/lab?login_ticket=${forPort.ticket}`, {
      redirect: 'manual',
    });
    expect(otherNotebook.status).toBe(401);
    expect(await otherNotebook.json()).toMatchObject({ error: { message: expect.stringContaining('for another notebook') } });
    const samePort = await fetch(`${notebook()}/lab?login_ticket=${forPort.ticket}`, { redirect: 'manual' });
    expect(samePort.status).toBe(303);

    // A changed character, or a ticket past its minute (sealed with the platform's key): refused, nothing used.
    const fresh = (await (await mint({ path: lab })).json()) as { ticket: string };
    const changed = `${fresh.ticket.slice(0, 30)}${fresh.ticket[30] === 'A' ? 'B' : 'A'}${fresh.ticket.slice(31)}`;
    expect((await fetch(`${notebook()}/lab?login_ticket=${changed}`, { redirect: 'manual' })).status).toBe(401);
    const tickets = createLoginTickets(readFileSync(path.join(t.dataDir, 'internal-token-secret'), 'utf8').trim());
    const stale = tickets.mint(
      { authorization: `Bearer ${teamA.key}`, organizationId: null, projectId: null },
      { clusterId, notebook: 'lab', namespace: 'team-a' },
      Date.now() - 61_000,
    );
    const expired = await fetch(`${notebook()}/lab?login_ticket=${stale.ticket}`, { redirect: 'manual' });
    expect(expired.status).toBe(401);
    expect(await expired.json()).toMatchObject({ error: { message: expect.stringContaining('already used or has expired') } });
    // Not a WebSocket, not a POST: a ticket opens a page.
    expect(await refusedUpgrade(`${notebook().replace('http:', 'ws:')}/api/kernels/k1/channels?login_ticket=${fresh.ticket}`, {})).toBe(400);
    expect((await fetch(`${notebook()}/lab?login_ticket=${fresh.ticket}`, { method: 'POST', body: 'x' })).status).toBe(400);
    expect(jupyterRequests()).toBe(before + 1);
    // None of that used it.
    expect((await fetch(`${notebook()}/lab?login_ticket=${fresh.ticket}`, { redirect: 'manual' })).status).toBe(303);
  });

  it('a link from another site gets the confirmation page without using its ticket, which then signs in once after "Continue"', async () => {
    const minted = await fetch(`${t.url}/v1/sessions/login_tickets`, {
      method: 'POST',
      headers: as(teamA.key),
      body: JSON.stringify({ path: `/v1/sessions/${clusterId}/v1/services/notebooks/lab/team-a/lab` }),
    });
    const { url } = (await minted.json()) as { url: string };
    const elsewhere: Record<string, string>[] = [{ 'sec-fetch-site': 'cross-site' }, { referer: 'https://evil.example/page' }];
    for (const from of elsewhere) {
      const page = await fetch(`${t.url}${url}`, { headers: from, redirect: 'manual' });
      expect(page.status).toBe(200);
      expect(cookieOf(page)).toBeUndefined();
      expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
      const html = await page.text();
      expect(html).toContain('Continue only if you opened it yourself');
      expect(html).toContain(`href="${url}"`);
    }
    const continued = await fetch(`${t.url}${url}`, { headers: { 'sec-fetch-site': 'same-origin' }, redirect: 'manual' });
    expect(continued.status).toBe(303);
    expect(cookieOf(continued)).toBeDefined();
    expect((await fetch(`${t.url}${url}`, { headers: { 'sec-fetch-site': 'same-origin' }, redirect: 'manual' })).status).toBe(401);
  });

  it("another organization's owner gets a ticket only for what their own key opens: not team-a's notebook; a ticket needs a key", async () => {
    const orgB = await projectWithKey(t, 'org-b', { role: 'OWNER' });
    const body = JSON.stringify({ path: `/v1/sessions/${clusterId}/v1/services/notebooks/lab/team-a/lab` });
    const minted = await fetch(`${t.url}/v1/sessions/login_tickets`, { method: 'POST', headers: as(orgB.key), body });
    expect(minted.status).toBe(201);
    const { url } = (await minted.json()) as { url: string };
    const before = jupyterRequests();
    const used = await fetch(`${t.url}${url}`, { redirect: 'manual' });
    expect(used.status).toBe(403);
    expect(await used.json()).toMatchObject({ error: { code: 'FORBIDDEN', message: expect.stringContaining('is not assigned to your project') } });
    expect(cookieOf(used)).toBeUndefined();
    expect(jupyterRequests()).toBe(before);

    // No credential, a bad key, the notebooks' cookie: no ticket.
    const anonymous = await fetch(`${t.url}/v1/sessions/login_tickets`, { method: 'POST', body });
    expect(anonymous.status).toBe(401);
    expect(await anonymous.json()).toMatchObject({ error: { code: 'UNAUTHENTICATED' } });
    expect((await fetch(`${t.url}/v1/sessions/login_tickets`, { method: 'POST', headers: as('sk-not-a-key'), body })).status).toBe(401);
    const cookie = cookieOf(await fetch(`${notebook()}/api/status`, { headers: as(teamA.key) }))!;
    expect((await fetch(`${t.url}/v1/sessions/login_tickets`, { method: 'POST', headers: { cookie }, body })).status).toBe(401);
    // A body that names no notebook: 400, with the shape of the notebook routes' errors.
    for (const bad of ['not json', JSON.stringify({}), JSON.stringify({ path: '/v1/files' }), JSON.stringify({ path: 'https://evil.example/x' })]) {
      const refused = await fetch(`${t.url}/v1/sessions/login_tickets`, { method: 'POST', headers: as(teamA.key), body: bad });
      expect({ bad, status: refused.status }).toEqual({ bad, status: 400 });
      expect(await refused.json()).toMatchObject({ error: { code: 'BAD_USER_INPUT', message: expect.stringContaining('"path"') } });
    }
    const notANotebook = await fetch(`${t.url}/v1/sessions/login_tickets`, {
      method: 'POST',
      headers: as(teamA.key),
      body: JSON.stringify({ path: `/v1/sessions/${clusterId}/v1/services/notebooks/Not_A_Name/team-a/` }),
    });
    expect(notANotebook.status).toBe(400);
    expect((await fetch(`${t.url}/v1/sessions/login_tickets`, { headers: as(teamA.key) })).status).toBe(405);
  });

  it('refuses without proxying: no credential 401, another project 403, a wrong namespace, an unknown notebook or port 404, an unknown cluster', async () => {
    const before = jupyterRequests();
    const anonymous = await fetch(`${notebook()}/lab`);
    expect(anonymous.status).toBe(401);
    expect(await anonymous.json()).toMatchObject({ error: { code: 'UNAUTHENTICATED', message: expect.stringContaining('mariner notebooks open') } });

    const foreign = await fetch(`${notebook()}/lab`, { headers: as(teamB.key) });
    expect(foreign.status).toBe(403);
    expect(await foreign.json()).toMatchObject({ error: { code: 'FORBIDDEN', message: expect.stringContaining('team-a') } });
    expect(await refusedUpgrade(`${notebook().replace('http:', 'ws:')}/api/kernels/k1/channels`, as(teamB.key))).toBe(403);
    // Team B's own namespace has no such notebook.
    const elsewhere = await fetch(`${t.url}/v1/sessions/${clusterId}/v1/services/notebooks/lab/team-b/lab`, { headers: as(teamB.key) });
    expect(elsewhere.status).toBe(404);
    expect(await elsewhere.json()).toMatchObject({ error: { message: expect.stringContaining('No notebook named "lab"') } });

    const unknown = await fetch(`${t.url}/v1/sessions/${clusterId}/v1/services/notebooks/nope/team-a/`, { headers: as(teamA.key) });
    expect(unknown.status).toBe(404);
    const port = await fetch(`${notebook()}/9999/`, { headers: as(teamA.key) });
    expect(port.status).toBe(404);
    expect(await port.json()).toMatchObject({ error: { message: 'Notebook "lab" serves ports 8888, 6006, not 9999' } });
    const badName = await fetch(`${t.url}/v1/sessions/${clusterId}/v1/services/notebooks/Not_A_Name/team-a/`, { headers: as(teamA.key) });
    expect(badName.status).toBe(404);
    expect((await fetch(`${t.url}/v1/sessions/cluster-nosuchcluster/v1/services/notebooks/lab/team-a/`, { headers: as(teamA.key) })).status).toBe(503);
    expect((await fetch(`${t.url}/v1/sessions/not-a-cluster/v1/services/notebooks/lab/team-a/`, { headers: as(teamA.key) })).status).toBe(404);
    expect(jupyterRequests()).toBe(before);
  });

  it("a namespace is one project's, so a notebook's name never names another project's notebook", async () => {
    // Before namespaces were claimed, two projects could share team-a and a name could be ambiguous (409).
    const { createOrganization: org } = await t.gqlOk(`mutation { createOrganization(input: { title: "team-c" }) { id } }`);
    const shared = await t.gql(
      `mutation($org: ID!) { createProject(input: { organizationId: $org, title: "team-c", assignments: [{ clusterId: "${clusterId}", namespace: "team-a" }] }) { id } }`,
      {
        org: org.id,
      },
    );
    expect(shared.errors?.[0]?.extensions?.code).toBe('CONFLICT');
    const response = await fetch(`${t.url}/v1/workspaces/notebooks`, {
      method: 'POST',
      headers: { ...as(teamA.key), 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'twin', image: { type: 'jupyter-lab-base' } }),
    });
    const { id } = (await response.json()) as { id: string };
    await waitFor(
      async () => kube.objects('Service', 'team-a').filter((s) => s.metadata.labels['mariner.dev/notebook'] === 'twin').length,
      (n) => n === 1,
      'the Service',
    );
    kube.serveService('team-a', jobObjectName(id), 8888, jupyter.url);
    const byName = await fetch(`${t.url}/v1/sessions/${clusterId}/v1/services/notebooks/twin/team-a/api/status`, { headers: as(teamA.key) });
    expect(byName.status).toBe(200);
  });

  it('a cluster whose agent runs the local executor answers that it runs no notebooks', async () => {
    const response = await fetch(`${t.url}/v1/sessions/${localClusterId}/v1/services/notebooks/lab/laptop-a/`, { headers: as(teamA.key) });
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: { code: 'NOT_FOUND', message: expect.stringContaining('local executor') } });
  });
});
