import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../../agent/index.js';
import { createKubernetesExecutor } from '../../agent/kubernetesExecutor.js';
import { silentLogger } from '../../lib/logging.js';
import { kubeConfigFor, kubeRequest, startKubeApiServer, TEST_TLS, type KubeApiServer } from '../support/kubeApiServer.js';
import { kubectlPath } from '../support/kubectl.js';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { projectWithKey } from '../support/tenants.js';
import { startTlsFront } from '../support/tlsFront.js';
import { cliHome, runCli, type CliResult } from './cliProcess.js';

const execFileAsync = promisify(execFile);

/**
 * Issue 19: `mariner kubeconfig CLUSTER` and then a real kubectl through the context it wrote: the platform
 * behind TLS (as behind its ingress; kubectl sends no token over http), an agent with a Kubernetes cluster
 * (the test Kubernetes API) connected through its tunnel, and a project's key assigned one namespace there.
 */
describe('mariner kubeconfig + kubectl', () => {
  let t: TestPlatform;
  let server: KubeApiServer;
  let agent: Agent;
  let front: { url: string; close(): Promise<void> };
  let home: string;
  let env: NodeJS.ProcessEnv;
  let caFile: string;
  let clusterId: string;
  const cli = (args: string[], input?: string): Promise<CliResult> => runCli(env, args, { ...(input !== undefined ? { input } : {}), cwd: home });

  beforeAll(async () => {
    server = await startKubeApiServer({ nodes: [{ name: 'gpu-node', gpus: 2 }] });
    for (const ns of ['team-a', 'team-b']) {
      await kubeRequest(server, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    }
    for (const [ns, name] of [
      ['team-a', 'trainer'],
      ['team-b', 'secret-trainer'],
    ] as const) {
      await kubeRequest(server, 'POST', `/api/v1/namespaces/${ns}/pods`, {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, namespace: ns },
        spec: { containers: [{ name: 'main', image: 'busybox' }] },
      });
    }
    t = await startTestPlatform();
    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "k8s" }) { registrationKey cluster { id } } }');
    clusterId = registerCluster.cluster.id;
    agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: registerCluster.registrationKey,
      executor: await createKubernetesExecutor({ kubeConfig: kubeConfigFor(server), logger: silentLogger() }),
      backoff: { initialMs: 10, maxMs: 50 },
      logger: silentLogger(),
    });
    await agent.whenConnected();
    const teamA = await projectWithKey(t, 'team-a', { assignments: [{ clusterId: registerCluster.cluster.id, namespace: 'team-a' }] });
    front = await startTlsFront(t.url, TEST_TLS);
    ({ home, env } = cliHome());
    caFile = path.join(home, 'platform-ca.pem');
    writeFileSync(caFile, TEST_TLS.cert);
    // The CLI itself trusts the platform's certificate as a person's machine would (its CA installed).
    env = { ...env, NODE_EXTRA_CA_CERTS: caFile };
    const login = await cli(['login', '--url', front.url, '--api-key-stdin'], `${teamA.key}\n`);
    expect(login.code, login.stderr).toBe(0);
  }, 90_000);
  afterAll(async () => {
    await front?.close();
    await agent?.close();
    await t?.close();
    await server?.close();
  });

  it('kubectl get pods through the written context lists the project namespace, and another namespace is refused', async () => {
    const kubectl = await kubectlPath();
    const file = path.join(home, '.kube', 'config');
    // The project's key may not read the clusters (api.clusters.read): by name, the CLI says so; by id, it needs no lookup.
    const byName = await cli(['kubeconfig', 'k8s']);
    expect(byName.code).toBe(1);
    expect(byName.stderr).toContain('FORBIDDEN');
    const written = await cli(['kubeconfig', clusterId, '--name', 'mariner-k8s', '--namespace', 'team-a', '--certificate-authority', caFile, '-o', 'json']);
    expect(written.code, written.stderr).toBe(0);
    expect(written.stderr).not.toContain('warning');
    expect(JSON.parse(written.stdout)).toMatchObject({ context: 'mariner-k8s', kubeconfig: file, server: `${front.url}/v1/sessions/${clusterId}` });
    const config = YAML.parse(readFileSync(file, 'utf8'));
    expect(config.clusters[0].cluster['certificate-authority-data']).toBe(Buffer.from(TEST_TLS.cert).toString('base64'));

    // kubectl finds ~/.kube/config itself: no KUBECONFIG, no flags.
    const kenv = { PATH: env['PATH'], HOME: home };
    const { stdout } = await execFileAsync(kubectl, ['get', 'pods'], { env: kenv, timeout: 30_000 });
    expect(stdout).toMatch(/^NAME\s+READY\s+STATUS/m);
    expect(stdout).toMatch(/^trainer\s/m);
    expect(stdout).not.toContain('secret-trainer');
    await expect(execFileAsync(kubectl, ['get', 'pods', '-n', 'team-b'], { env: kenv, timeout: 30_000 })).rejects.toMatchObject({
      stderr: expect.stringContaining('not assigned to your project'),
    });
  }, 60_000);

  it('kubeconfig federated points kubectl at the virtual cluster, which lists the federated Jobs of the project', async () => {
    const kubectl = await kubectlPath();
    const file = path.join(home, 'federated.yaml');
    const written = await cli(['kubeconfig', 'federated', '--kubeconfig', file, '--namespace', 'team-a', '--certificate-authority', caFile, '-o', 'json']);
    expect(written.code, written.stderr).toBe(0);
    expect(JSON.parse(written.stdout)).toMatchObject({ context: 'mariner-federated', server: `${front.url}/v1/sessions/federated` });
    const result = await execFileAsync(kubectl, ['--kubeconfig', file, 'get', 'jobs'], { env: { PATH: env['PATH'], HOME: home }, timeout: 30_000 });
    expect(result.stderr).toContain('No resources found in team-a namespace');
  }, 60_000);

  it('a CA file that cannot be read is a usage error (exit 2) and the kubeconfig is left as it was', async () => {
    const file = path.join(home, '.kube', 'config');
    const before = readFileSync(file, 'utf8');
    const result = await cli(['kubeconfig', clusterId, '--name', 'other', '--certificate-authority', path.join(home, 'missing.pem')]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--certificate-authority: cannot read');
    expect(readFileSync(file, 'utf8')).toBe(before);
  });

  it('over plain http the CLI warns that kubectl will send no credentials', async () => {
    const plain = await runCli(
      { ...env, MARINER_URL: t.url, MARINER_API_KEY: t.adminKey },
      ['kubeconfig', 'k8s', '--kubeconfig', path.join(home, 'plain.yaml')],
      {
        cwd: home,
      },
    );
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stderr).toContain('kubectl sends no credentials over http');
  });
});
