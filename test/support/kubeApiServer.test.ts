/**
 * The Kubernetes API test double, proven against the clients the agent and its users
 * run: @kubernetes/client-node 1.4.0 and kubectl v1.35. Whatever these tests show the
 * double doing, a real kube-apiserver does the same way.
 */
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { promisify } from 'node:util';
import {
  ApiException,
  AppsV1Api,
  BatchV1Api,
  CoreV1Api,
  Exec,
  KubeConfig,
  Log,
  PatchStrategy,
  setHeaderOptions,
  Watch,
  type V1Pod,
} from '@kubernetes/client-node';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { startKubeApiServer, TEST_TLS, type KubeApiServer } from './kubeApiServer.js';
import { kubectlPath } from './kubectl.js';

/** Items as they arrive, and promises for the first one (already in or still to come) that matches. */
class Inbox<T> {
  readonly items: T[] = [];
  private readonly waiters = new Set<() => void>();

  push(item: T): void {
    this.items.push(item);
    for (const waiter of this.waiters) waiter();
  }

  next(matches: (item: T) => boolean): Promise<T> {
    return new Promise((resolve) => {
      const check = () => {
        const found = this.items.find(matches);
        if (found === undefined) return;
        this.waiters.delete(check);
        resolve(found);
      };
      this.waiters.add(check);
      check();
    });
  }
}

/** The text a stream has produced so far, and a promise for when it contains `expected`. */
function textOf(stream: Readable) {
  const inbox = new Inbox<string>();
  let text = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    text += chunk;
    inbox.push(text);
  });
  return {
    get text() {
      return text;
    },
    contains: (expected: string) => inbox.next((sofar) => sofar.includes(expected)),
  };
}

const containers = [{ name: 'main', image: 'busybox' }];

function pod(name: string, labels: Record<string, string> = {}): V1Pod {
  return { metadata: { name, labels }, spec: { containers } };
}

/** The Status object an ApiException carries. */
async function statusOf(call: Promise<unknown>): Promise<{ code: number; reason: string; message: string; details?: any }> {
  const error = await call.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (error: unknown) => error,
  );
  expect(error).toBeInstanceOf(ApiException);
  const status = JSON.parse((error as ApiException<string>).body);
  expect(status).toMatchObject({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code: (error as ApiException<string>).code });
  return status;
}

describe('the Kubernetes API test double', () => {
  let server: KubeApiServer;
  let config: KubeConfig;
  let core: CoreV1Api;
  let apps: AppsV1Api;

  beforeAll(async () => {
    server = await startKubeApiServer({ nodes: [{ name: 'gpu-node-1', gpus: 8, gpuProduct: 'NVIDIA-A100-SXM4-80GB' }, { name: 'cpu-node-1' }] });
    config = new KubeConfig();
    config.loadFromOptions({
      // client-node refuses plain http unless told to skip TLS verification.
      clusters: [{ name: 'test', server: server.url, skipTLSVerify: true }],
      users: [{ name: 'test', token: server.token }],
      contexts: [{ name: 'test', cluster: 'test', user: 'test' }],
      currentContext: 'test',
    });
    core = config.makeApiClient(CoreV1Api);
    apps = config.makeApiClient(AppsV1Api);
    await core.createNamespace({ body: { metadata: { name: 'team-a' } } });
  });

  afterAll(async () => {
    await server?.close();
  });

  /** A pod whose container has started, so its log can be read. */
  async function runningPod(name: string): Promise<void> {
    await core.createNamespacedPod({ namespace: 'team-a', body: pod(name) });
    // client-node's default patch type is JSON Patch (RFC 6902).
    await core.patchNamespacedPodStatus({ name, namespace: 'team-a', body: [{ op: 'replace', path: '/status/phase', value: 'Running' }] });
  }

  it('refuses a request without the bearer token with a 401 Status', async () => {
    const attempts: Record<string, string>[] = [{}, { authorization: 'Bearer not-the-token' }];
    for (const headers of attempts) {
      const response = await fetch(`${server.url}/api/v1/namespaces`, { headers });
      expect(response.status).toBe(401);
      expect(await response.json()).toMatchObject({ kind: 'Status', status: 'Failure', reason: 'Unauthorized', code: 401 });
    }
  });

  it('creates pods with the metadata the apiserver sets and lists them by label', async () => {
    const created = await core.createNamespacedPod({ namespace: 'team-a', body: pod('web-1', { app: 'web', tier: 'front' }) });
    await core.createNamespacedPod({ namespace: 'team-a', body: pod('db-1', { app: 'db' }) });

    expect(created.metadata).toMatchObject({ namespace: 'team-a', uid: expect.any(String), resourceVersion: expect.any(String) });
    expect(created.metadata?.creationTimestamp).toBeInstanceOf(Date);
    expect(created.status?.phase).toBe('Pending');
    const web = await core.listNamespacedPod({ namespace: 'team-a', labelSelector: 'app=web,tier=front' });
    expect(web.items.map((item) => item.metadata?.name)).toEqual(['web-1']);
    const notDb = await core.listPodForAllNamespaces({ labelSelector: 'app!=db' });
    expect(notDb.items.map((item) => item.metadata?.name)).toContain('web-1');
    expect(notDb.items.map((item) => item.metadata?.name)).not.toContain('db-1');
    const setBased = await core.listNamespacedPod({ namespace: 'team-a', labelSelector: 'app in (web,db),!tier' });
    expect(setBased.items.map((item) => item.metadata?.name)).toEqual(['db-1']);
    expect(server.objects('Pod', 'team-a').map((item) => item.metadata.name)).toEqual(['db-1', 'web-1']);
  });

  it('answers a missing pod with 404 NotFound and a second create with 409 AlreadyExists', async () => {
    const missing = await statusOf(core.readNamespacedPod({ name: 'nope', namespace: 'team-a' }));
    expect(missing).toMatchObject({ code: 404, reason: 'NotFound', message: 'pods "nope" not found', details: { name: 'nope', kind: 'pods' } });

    await core.createNamespacedPod({ namespace: 'team-a', body: pod('twice') });
    const again = await statusOf(core.createNamespacedPod({ namespace: 'team-a', body: pod('twice') }));
    expect(again).toMatchObject({ code: 409, reason: 'AlreadyExists', message: 'pods "twice" already exists' });
  });

  it('refuses malformed objects as the apiserver does', async () => {
    const nameless = await statusOf(core.createNamespacedPod({ namespace: 'team-a', body: { spec: { containers } } }));
    expect(nameless).toMatchObject({ code: 422, reason: 'Invalid', details: { causes: [{ field: 'metadata.name', reason: 'FieldValueRequired' }] } });

    const batch = config.makeApiClient(BatchV1Api);
    const job = { metadata: { name: 'train' }, spec: { template: { spec: { containers } } } };
    const restartAlways = await statusOf(batch.createNamespacedJob({ namespace: 'team-a', body: job }));
    expect(restartAlways).toMatchObject({
      code: 422,
      reason: 'Invalid',
      message: 'Job.batch "train" is invalid: spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"',
    });

    const noNamespace = await statusOf(core.createNamespacedPod({ namespace: 'no-such-team', body: pod('x') }));
    expect(noNamespace).toMatchObject({ code: 404, reason: 'NotFound', message: 'namespaces "no-such-team" not found' });

    const response = await fetch(`${server.url}/api/v1/namespaces/team-a/pods`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'x' } }),
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ kind: 'Status', reason: 'BadRequest' });
  });

  it('refuses an update from a stale resourceVersion with 409 Conflict', async () => {
    const stale = await core.createNamespacedPod({ namespace: 'team-a', body: pod('edited') });
    const patched = await core.patchNamespacedPod(
      { name: 'edited', namespace: 'team-a', body: { metadata: { labels: { edited: 'yes' } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    expect(Number(patched.metadata?.resourceVersion)).toBeGreaterThan(Number(stale.metadata?.resourceVersion));

    const conflict = await statusOf(core.replaceNamespacedPod({ name: 'edited', namespace: 'team-a', body: stale }));
    expect(conflict).toMatchObject({ code: 409, reason: 'Conflict', details: { name: 'edited', kind: 'pods' } });
    await core.replaceNamespacedPod({ name: 'edited', namespace: 'team-a', body: { ...patched, metadata: { ...patched.metadata, annotations: { a: 'b' } } } });
  });

  it('scales a deployment through the scale subresource', async () => {
    const body = {
      metadata: { name: 'vllm' },
      spec: { selector: { matchLabels: { app: 'vllm' } }, template: { metadata: { labels: { app: 'vllm' } }, spec: { containers } } },
    };
    await apps.createNamespacedDeployment({ namespace: 'team-a', body });

    const scale = await apps.readNamespacedDeploymentScale({ name: 'vllm', namespace: 'team-a' });
    expect(scale).toMatchObject({ kind: 'Scale', apiVersion: 'autoscaling/v1', spec: { replicas: 1 }, status: { selector: 'app=vllm' } });
    await apps.replaceNamespacedDeploymentScale({ name: 'vllm', namespace: 'team-a', body: { ...scale, spec: { replicas: 3 } } });
    const deployment = await apps.readNamespacedDeployment({ name: 'vllm', namespace: 'team-a' });
    expect(deployment.spec?.replicas).toBe(3);
    expect(deployment.metadata?.generation).toBe(2);

    const patched = await apps.patchNamespacedDeploymentScale(
      { name: 'vllm', namespace: 'team-a', body: { spec: { replicas: 0 } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    expect(patched.spec?.replicas).toBe(0);
    expect(server.objects('Deployment', 'team-a')[0].spec.replicas).toBe(0);
  });

  it("deletes what the garbage collector and the namespace finalizer would: owned pods, a namespace's contents", async () => {
    const batch = config.makeApiClient(BatchV1Api);
    await core.createNamespace({ body: { metadata: { name: 'doomed' } } });
    for (const name of ['orphaning', 'cascading']) {
      const job = await batch.createNamespacedJob({
        namespace: 'doomed',
        body: { metadata: { name }, spec: { template: { spec: { containers, restartPolicy: 'Never' } } } },
      });
      const ownerReferences = [{ apiVersion: 'batch/v1', kind: 'Job', name, uid: job.metadata!.uid!, controller: true }];
      await core.createNamespacedPod({ namespace: 'doomed', body: { metadata: { name: `${name}-pod`, ownerReferences }, spec: { containers } } });
    }

    // batch/v1 Jobs orphan their pods unless told otherwise (kubectl delete asks for Background).
    await batch.deleteNamespacedJob({ name: 'orphaning', namespace: 'doomed' });
    await batch.deleteNamespacedJob({ name: 'cascading', namespace: 'doomed', propagationPolicy: 'Background' });
    expect(server.objects('Pod', 'doomed').map((item) => item.metadata.name)).toEqual(['orphaning-pod']);
    await core.deleteNamespace({ name: 'doomed' });
    expect(server.objects('Pod', 'doomed')).toEqual([]);
    expect(server.objects('Namespace').map((item) => item.metadata.name)).not.toContain('doomed');
  });

  it('streams pod changes to a watch as ADDED, MODIFIED and DELETED events', async () => {
    await core.createNamespace({ body: { metadata: { name: 'watched' } } });
    const events = new Inbox<{ type: string; name: string; phase: string }>();
    const done = new Inbox<unknown>();
    const watch = await new Watch(config).watch(
      '/api/v1/namespaces/watched/pods',
      {},
      (type, object: V1Pod) => events.push({ type, name: object.metadata!.name!, phase: object.status!.phase! }),
      (error) => done.push(error),
    );

    await core.createNamespacedPod({ namespace: 'watched', body: pod('job-pod') });
    await events.next((event) => event.type === 'ADDED');
    await core.patchNamespacedPodStatus({ name: 'job-pod', namespace: 'watched', body: [{ op: 'replace', path: '/status/phase', value: 'Succeeded' }] });
    await events.next((event) => event.type === 'MODIFIED');
    await core.deleteNamespacedPod({ name: 'job-pod', namespace: 'watched' });
    await events.next((event) => event.type === 'DELETED');
    watch.abort();
    await done.next(() => true);

    expect(events.items).toEqual([
      { type: 'ADDED', name: 'job-pod', phase: 'Pending' },
      { type: 'MODIFIED', name: 'job-pod', phase: 'Succeeded' },
      { type: 'DELETED', name: 'job-pod', phase: 'Succeeded' },
    ]);
  });

  it('follows a pod log: lines appended after the request arrive, and endLog ends it', async () => {
    await runningPod('trainer');
    server.appendLog('team-a', 'trainer', 'step 1');
    const stream = new PassThrough();
    const output = textOf(stream);
    await new Log(config).log('team-a', 'trainer', 'main', stream, { follow: true });

    await output.contains('step 1\n');
    server.appendLog('team-a', 'trainer', 'step 2\nstep 3\n');
    await output.contains('step 3\n');
    server.endLog('team-a', 'trainer');
    await finished(stream);
    expect(output.text).toBe('step 1\nstep 2\nstep 3\n');
  });

  it('refuses the log of a pod whose container has not started, as the kubelet does', async () => {
    await core.createNamespacedPod({ namespace: 'team-a', body: pod('pending') });
    const response = await fetch(`${server.url}/api/v1/namespaces/team-a/pods/pending/log`, { headers: { authorization: `Bearer ${server.token}` } });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ reason: 'BadRequest', message: 'container "main" in pod "pending" is waiting to start: ContainerCreating' });
  });

  it('echoes exec stdin to stdout over the channel.k8s.io WebSocket protocol', async () => {
    await runningPod('shell');
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const output = textOf(stdout);
    const status = new Inbox<{ status?: string }>();
    await new Exec(config).exec('team-a', 'shell', 'main', ['cat'], stdout, null, stdin, false, (result) => status.push(result));

    stdin.write('through the proxy\n');
    await output.contains('through the proxy\n');
    stdin.end();
    expect(await status.next(() => true)).toMatchObject({ status: 'Success' });
    const upgraded = server.requests.find((request) => request.path.startsWith('/api/v1/namespaces/team-a/pods/shell/exec?'));
    expect(upgraded?.headers).toMatchObject({ upgrade: 'websocket', 'sec-websocket-protocol': expect.stringContaining('v5.channel.k8s.io') });

    const plain = await fetch(`${server.url}/api/v1/namespaces/team-a/pods/shell/exec?command=cat`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.token}` },
    });
    expect(plain.status).toBe(400);
    expect(await plain.json()).toMatchObject({ kind: 'Status', reason: 'BadRequest', message: 'Upgrade request required' });
  });

  it('with tty=true records the terminal sizes sent on channel 4, and Ctrl-D ends the echo with Success, as a terminal would', async () => {
    await runningPod('terminal');
    const ws = new WebSocket(
      `${server.url.replace('http:', 'ws:')}/api/v1/namespaces/team-a/pods/terminal/exec?command=cat&stdin=true&stdout=true&tty=true`,
      ['v5.channel.k8s.io'],
      { headers: { authorization: `Bearer ${server.token}` } },
    );
    const messages: Buffer[] = [];
    ws.on('message', (data: Buffer) => messages.push(data));
    const closed = once(ws, 'close');
    await once(ws, 'open');
    ws.send(Buffer.concat([Buffer.from([4]), Buffer.from(JSON.stringify({ Width: 132, Height: 43 }))]));
    ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('ls\r\u0004')]));
    await closed;
    expect(messages.map((m) => [m[0], m.subarray(1).toString()])).toEqual([
      [1, 'ls\r'],
      [3, JSON.stringify({ metadata: {}, status: 'Success' })],
    ]);
    expect(server.terminalSizes).toEqual([{ pod: 'terminal', width: 132, height: 43 }]);
  });

  it("proxies to a Service's endpoint: HTTP with links moved under the proxy path, WebSockets, 503 without endpoints", async () => {
    // The endpoint: echoes what reached it, serves a page with links and a redirect, and a WebSocket echo.
    const endpoint = createServer((req, res) => {
      if (req.url === '/page') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'access-control-allow-origin': '*' });
        return void res.end(
          '<html><head><script src="/static/app.js"></script><link href="style.css"></head><a href="https://elsewhere.example/x">x</a></html>',
        );
      }
      if (req.url === '/old') return void res.writeHead(302, { location: '/new?a=1' }).end();
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ method: req.method, url: req.url, authorization: req.headers.authorization ?? null }));
    });
    const sockets = new WebSocketServer({ server: endpoint });
    sockets.on('connection', (ws, req) => ws.on('message', (data) => ws.send(`${req.url} ${data}`)));
    await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', () => resolve()));
    try {
      await core.createNamespacedService({ namespace: 'team-a', body: { metadata: { name: 'lab' }, spec: { ports: [{ name: 'http', port: 8888 }] } } });
      const proxy = `${server.url}/api/v1/namespaces/team-a/services/lab:8888/proxy`;
      const auth = { authorization: `Bearer ${server.token}` };
      const none = await fetch(`${proxy}/x`, { headers: auth });
      expect(none.status).toBe(503);
      expect(await none.json()).toMatchObject({ kind: 'Status', reason: 'ServiceUnavailable', message: 'no endpoints available for service "lab:8888"' });

      server.serveService('team-a', 'lab', 8888, `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}`);
      const echoed = await fetch(`${proxy}/api/x?y=1`, { method: 'POST', headers: auth, body: 'hi' });
      expect(await echoed.json()).toEqual({ method: 'POST', url: '/api/x?y=1', authorization: null });
      // By port name too.
      expect((await (await fetch(`${server.url}/api/v1/namespaces/team-a/services/lab:http/proxy/`, { headers: auth })).json()).url).toBe('/');
      const page = await fetch(`${proxy}/page`, { headers: auth });
      expect(page.headers.get('access-control-allow-origin')).toBeNull();
      expect(await page.text()).toBe(
        '<html><head><script src="/api/v1/namespaces/team-a/services/lab:8888/proxy/static/app.js"></script><link href="style.css"></head><a href="https://elsewhere.example/x">x</a></html>',
      );
      const moved = await fetch(`${proxy}/old`, { headers: auth, redirect: 'manual' });
      expect(moved.headers.get('location')).toBe('/api/v1/namespaces/team-a/services/lab:8888/proxy/new?a=1');

      const ws = new WebSocket(`${proxy.replace('http:', 'ws:')}/socket?k=1`, { headers: auth });
      await once(ws, 'open');
      ws.send('ping');
      const [reply] = await once(ws, 'message');
      expect(String(reply)).toBe('/socket?k=1 ping');
      ws.close();
    } finally {
      sockets.close();
      endpoint.closeAllConnections();
      await new Promise((resolve) => endpoint.close(resolve));
    }
  });

  it('seeds nodes with their GPUs as capacity, labels and a Ready condition', async () => {
    const nodes = await core.listNode();
    const gpuNode = nodes.items.find((node) => node.metadata?.name === 'gpu-node-1')!;
    expect(gpuNode.status?.allocatable?.['nvidia.com/gpu']).toBe('8');
    expect(gpuNode.metadata?.labels?.['nvidia.com/gpu.product']).toBe('NVIDIA-A100-SXM4-80GB');
    expect(gpuNode.status?.conditions?.find((condition) => condition.type === 'Ready')?.status).toBe('True');
    const cpuNode = nodes.items.find((node) => node.metadata?.name === 'cpu-node-1')!;
    expect(cpuNode.status?.capacity?.['nvidia.com/gpu']).toBeUndefined();
  });

  describe('with kubectl', () => {
    let kubectl: string;
    let workDir: string;
    let kubeconfig: string;

    beforeAll(async () => {
      kubectl = await kubectlPath();
      workDir = await mkdtemp(path.join(tmpdir(), 'kubectl-test-'));
      kubeconfig = path.join(workDir, 'kubeconfig');
      // kubectl sends the token only over TLS, hence httpsUrl; JSON is YAML, so it reads this file.
      const cluster = { server: server.httpsUrl, 'certificate-authority-data': Buffer.from(TEST_TLS.cert).toString('base64') };
      await writeFile(
        kubeconfig,
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'Config',
          clusters: [{ name: 'test', cluster }],
          users: [{ name: 'test', user: { token: server.token } }],
          contexts: [{ name: 'test', context: { cluster: 'test', user: 'test' } }],
          'current-context': 'test',
        }),
      );
      await core.createNamespace({ body: { metadata: { name: 'cli' } } });
    }, 120_000);

    afterAll(async () => {
      if (workDir) await rm(workDir, { recursive: true, force: true });
    });

    const args = (...rest: string[]) => ['--kubeconfig', kubeconfig, '--cache-dir', path.join(workDir, 'cache'), ...rest];

    it('prints pods with kubectl get, from the server-side table', async () => {
      await core.createNamespacedPod({ namespace: 'cli', body: pod('llama-worker-0') });
      const { stdout } = await promisify(execFile)(kubectl, args('get', 'pods', '-n', 'cli'));
      expect(stdout.split('\n')[0].split(/\s+/)).toEqual(['NAME', 'READY', 'STATUS', 'RESTARTS', 'AGE']);
      expect(stdout).toMatch(/^llama-worker-0\s+0\/1\s+Pending\s+0\s+\d+s$/m);
    });

    it('follows a log with kubectl logs -f until the container ends', async () => {
      await core.createNamespacedPod({ namespace: 'cli', body: pod('finetune') });
      await core.patchNamespacedPodStatus({ name: 'finetune', namespace: 'cli', body: [{ op: 'replace', path: '/status/phase', value: 'Running' }] });
      server.appendLog('cli', 'finetune', 'epoch 1');
      const child = spawn(kubectl, args('logs', '-f', 'finetune', '-n', 'cli'), { stdio: ['ignore', 'pipe', 'pipe'] });
      const exited = once(child, 'exit');
      const output = textOf(child.stdout);
      const errors = textOf(child.stderr);

      await output.contains('epoch 1\n');
      server.appendLog('cli', 'finetune', 'epoch 2');
      await output.contains('epoch 2\n');
      server.endLog('cli', 'finetune');
      const [code] = await exited;
      expect({ code, stderr: errors.text }).toEqual({ code: 0, stderr: '' });
      expect(output.text).toBe('epoch 1\nepoch 2\n');
    });

    it("passes an exec's exit status to kubectl exec as the kubelet reports it: sh -c 'exit 3' exits 3, false exits 1, cat echoes and exits 0", async () => {
      await core.createNamespacedPod({ namespace: 'cli', body: pod('shell') });
      await core.patchNamespacedPodStatus({ name: 'shell', namespace: 'cli', body: [{ op: 'replace', path: '/status/phase', value: 'Running' }] });
      const exec = (command: string[], input = '') =>
        new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
          const child = execFile(kubectl, args('exec', '-i', 'shell', '-n', 'cli', '--', ...command), (error, stdout, stderr) =>
            resolve({ code: error ? (error.code as number) : 0, stdout, stderr }),
          );
          child.stdin!.end(input);
        });
      expect(await exec(['sh', '-c', 'exit 3'])).toMatchObject({ code: 3, stderr: expect.stringContaining('command terminated with exit code 3') });
      expect(await exec(['false'])).toMatchObject({ code: 1 });
      expect(await exec(['cat'], 'kept as it was\n')).toEqual({ code: 0, stdout: 'kept as it was\n', stderr: '' });
    });
  }, 120_000);
});
