import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments, stringify } from 'yaml';
import { DEFAULT_DCGM_SELECTOR, dcgmSettingsFromEnv } from '../agent/kubernetes/dcgm.js';
import { InvalidManifestError, validateManifest } from '../agent/kubernetes/index.js';
import { jobSettingsFromEnv, runtimeSettingsFromEnv } from '../agent/kubernetesExecutor.js';
import { SERVED, servedPorts } from '../bin/components.js';
import { COMPONENT_NAMES, COMPONENT_SUBGRAPHS, loadServeConfig, subgraphUrlSetting, usesDatabase, type ComponentName } from '../bin/serveConfig.js';
import type { AnyComponent } from '../lib/component.js';
import { loadConfig } from '../lib/config.js';
import { SUBGRAPH_NAMES } from '../schema/subgraphs.js';
import { helmPath } from './support/kubectl.js';

/**
 * The Helm chart as CI can check it without a cluster: helm lint and helm template for the default
 * values and the multi-cluster example, every rendered manifest against the Kubernetes schema of its
 * kind with no unknown field, and the chart's settings against what `mariner serve` accepts.
 */

const execFileAsync = promisify(execFile);
const CHART = fileURLToPath(new URL('../charts/mariner', import.meta.url));
const EXAMPLES = path.join(CHART, 'examples', 'multi-cluster');
const NAMESPACE = 'mariner';

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: any;
}

let helm: string;
let scratch: string;

async function runHelm(args: string[]): Promise<{ ok: boolean; output: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(helm, args, {
      maxBuffer: 32 * 1024 * 1024,
      env: { ...process.env, HELM_CACHE_HOME: scratch, HELM_CONFIG_HOME: scratch, HELM_DATA_HOME: scratch },
    });
    return { ok: true, output: stdout + stderr };
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    return { ok: false, output: stdout + stderr };
  }
}

async function render(valuesFiles: string[]): Promise<Manifest[]> {
  const { ok, output } = await runHelm(['template', 'mariner', CHART, '--namespace', NAMESPACE, ...valuesFiles.flatMap((f) => ['-f', f])]);
  if (!ok) throw new Error(`helm template failed:\n${output}`);
  // Strict YAML: a key written twice (two label sets merged by hand) is an error, as for kubectl.
  return parseAllDocuments(output, { uniqueKeys: true })
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(`rendered YAML is invalid: ${doc.errors.map((e) => e.message).join('; ')}`);
      return doc.toJS() as Manifest | null;
    })
    .filter((m): m is Manifest => m !== null);
}

function valuesFile(name: string, text: string): string {
  const file = path.join(scratch, name);
  writeFileSync(file, text);
  return file;
}

function find(manifests: Manifest[], kind: string, name: string): Manifest {
  const found = manifests.find((m) => m.kind === kind && m.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name} among ${manifests.map((m) => `${m.kind}/${m.metadata.name}`).join(', ')}`);
  return found;
}

/** Every manifest through the strict validator; the problems of all of them at once. */
function problemsOf(manifests: Manifest[]): string[] {
  const problems: string[] = [];
  for (const manifest of manifests) {
    try {
      validateManifest(manifest);
    } catch (error) {
      problems.push((error as Error).message);
    }
  }
  return problems;
}

/** What the Secrets hold, in the shape each setting must have (lib/config checks them). */
const SECRET_STAND_INS: Record<string, string> = {
  DATABASE_URL: 'postgres://mariner@db/mariner',
  MARINER_ADMIN_API_KEY: `sk-${'a'.repeat(48)}`,
  MARINER_DEFAULT_CLUSTER_KEY: `clusterkey-${'b'.repeat(48)}`,
};

/** A Deployment's container env as a pod would see it, with stand-ins for what the Secrets hold. */
function envOf(manifests: Manifest[], deployment: string): Record<string, string> {
  const container = find(manifests, 'Deployment', deployment)['spec'].template.spec.containers[0];
  const env: Record<string, string> = {};
  for (const entry of container.env as { name: string; value?: string; valueFrom?: unknown }[]) {
    env[entry.name] = entry.value ?? SECRET_STAND_INS[entry.name] ?? 'x'.repeat(40);
  }
  return env;
}

/** What `mariner serve <component>` makes of the rendered settings: the mounted file and the pod's env. */
function serveConfigOf(manifests: Manifest[], component: ComponentName): ReturnType<typeof loadServeConfig> {
  const config = find(manifests, 'ConfigMap', 'mariner-config')['data']['config.json'] as string;
  const env = envOf(manifests, `mariner-${component}`);
  expect(env['MARINER_CONFIG_FILE']).toBe('/etc/mariner/config.json');
  return loadServeConfig(component, { ...env, MARINER_CONFIG_FILE: valuesFile(`config-${component}.json`, config) });
}

const SECRET_SETTINGS = [
  'DATABASE_URL',
  'MARINER_INTERNAL_TOKEN_SECRET',
  'MARINER_REGISTRATION_KEY',
  'MARINER_S3_ACCESS_KEY_ID',
  'MARINER_S3_SECRET_ACCESS_KEY',
  'MARINER_ADMIN_API_KEY',
  'MARINER_DEFAULT_CLUSTER_KEY',
  'MARINER_MILVUS_TOKEN',
  'HF_TOKEN',
];

/** Credentials set other than from a Secret: in the settings file, or as a plain env value. */
function plainCredentials(manifests: Manifest[]): string[] {
  const found: string[] = [];
  for (const manifest of manifests) {
    if (manifest.kind === 'ConfigMap') {
      const settings = JSON.parse(manifest['data']['config.json'] as string) as Record<string, unknown>;
      found.push(...SECRET_SETTINGS.filter((name) => name in settings).map((name) => `${manifest.metadata.name}: ${name}`));
    }
    if (manifest.kind !== 'Deployment') continue;
    for (const env of manifest['spec'].template.spec.containers[0].env as { name: string; value?: string; valueFrom?: { secretKeyRef?: unknown } }[]) {
      if (SECRET_SETTINGS.includes(env.name) && (env.value !== undefined || !env.valueFrom?.secretKeyRef)) found.push(`${manifest.metadata.name}: ${env.name}`);
    }
  }
  return found;
}

beforeAll(async () => {
  helm = await helmPath();
  scratch = mkdtempSync(path.join(tmpdir(), 'mariner-helm-'));
}, 120_000);

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('the chart with its default values (control plane and worker in one cluster)', () => {
  let manifests: Manifest[];
  beforeAll(async () => {
    manifests = await render([]);
  });

  it('passes helm lint', async () => {
    const { ok, output } = await runHelm(['lint', '--strict', CHART, '--namespace', NAMESPACE]);
    expect(output).toContain('0 chart(s) failed');
    expect(ok).toBe(true);
  });

  it('renders only manifests that match their Kubernetes schema, with no unknown field', () => {
    expect(manifests.length).toBeGreaterThan(20);
    expect(problemsOf(manifests)).toEqual([]);
  });

  it('the validator would catch a misspelt field in every kind the chart renders', () => {
    for (const manifest of manifests) {
      const misspelt = structuredClone(manifest);
      (misspelt.metadata as Record<string, unknown>)['lables'] = { a: 'b' };
      expect(() => validateManifest(misspelt), `${manifest.kind}/${manifest.metadata.name}`).toThrow(InvalidManifestError);
    }
  });

  it('runs every component of `mariner serve` as a Deployment with probes on /healthz and /readyz, a Service and a PodDisruptionBudget', () => {
    for (const component of COMPONENT_NAMES) {
      const deployment = find(manifests, 'Deployment', `mariner-${component}`);
      const container = deployment['spec'].template.spec.containers[0];
      expect(container.args).toEqual(['serve', component]);
      expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'ops' });
      expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'ops' });
      expect(container.ports).toContainEqual({ name: 'ops', containerPort: 9090, protocol: 'TCP' });
      expect(container.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
      expect(deployment['spec'].template.spec.securityContext).toMatchObject({ runAsNonRoot: true });
      expect(container.resources.requests).toBeDefined();
      find(manifests, 'Service', `mariner-${component}`);
    }
    // Every component runs 2 replicas behind a PodDisruptionBudget, sessions included (replicas forward
    // to the one holding a cluster's tunnels over the peer port, at the pod IP the downward API gives).
    expect(
      manifests
        .filter((m) => m.kind === 'PodDisruptionBudget')
        .map((m) => m.metadata.name)
        .sort(),
    ).toEqual(COMPONENT_NAMES.map((c) => `mariner-${c}`).sort());
    const sessions = find(manifests, 'Deployment', 'mariner-sessions')['spec'];
    expect(sessions.replicas).toBe(2);
    expect(sessions.template.spec.containers[0].ports).toContainEqual({ name: 'peer', containerPort: 8090, protocol: 'TCP' });
    expect(sessions.template.spec.containers[0].env).toContainEqual({ name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } });
    expect(serveConfigOf(manifests, 'sessions').config.sessions).toMatchObject({ peerPort: 8090 });
  });

  it('routes one host: /graphql, /v1, the console and / to the gateway, /v1/sessions and the agent tunnel to sessions', () => {
    const ingress = find(manifests, 'Ingress', 'mariner');
    const routes = Object.fromEntries(
      ingress['spec'].rules[0].http.paths.map((p: { path: string; backend: { service: { name: string; port: { name: string } } } }) => [
        p.path,
        `${p.backend.service.name}:${p.backend.service.port.name}`,
      ]),
    );
    expect(routes).toEqual({
      '/graphql': 'mariner-gateway:http',
      '/v1': 'mariner-gateway:http',
      '/v1/sessions': 'mariner-sessions:http',
      '/v1/sessions-worker-service': 'mariner-sessions:http',
      '/console': 'mariner-gateway:http',
      '/': 'mariner-gateway:http',
    });
  });

  it('takes every credential from a Secret, never from a plain value', () => {
    expect(plainCredentials(manifests)).toEqual([]);
  });

  it('gives each component settings that `mariner serve` accepts, with every subgraph where a component serves it', () => {
    const config = JSON.parse(find(manifests, 'ConfigMap', 'mariner-config')['data']['config.json']);
    // The chart's addresses follow `mariner serve`'s port layout (bin/components.ts servedPorts): the
    // component's first subgraph on 8080, or on 8081 behind a public port (sessions).
    for (const [component, subgraphs] of Object.entries(COMPONENT_SUBGRAPHS) as [ComponentName, readonly string[]][]) {
      const ports = servedPorts(SERVED.get(component)!, 8080);
      for (const subgraph of subgraphs) {
        expect(config[subgraphUrlSetting(subgraph as never)]).toBe(`http://mariner-${component}.${NAMESPACE}.svc:${ports.subgraphs[subgraph]}/graphql`);
      }
    }
    for (const name of SUBGRAPH_NAMES) expect(config, name).toHaveProperty(subgraphUrlSetting(name));
    for (const component of COMPONENT_NAMES) {
      const { serve } = serveConfigOf(manifests, component);
      expect(serve.usesDatabase).toBe('DATABASE_URL' in envOf(manifests, `mariner-${component}`));
    }
  });

  it('runs the agent with the least rights: read-only cluster-wide, writes only in its namespace', () => {
    const agent = find(manifests, 'Deployment', 'mariner-agent')['spec'].template.spec;
    expect(agent.serviceAccountName).toBe('mariner-agent');
    expect(agent.containers[0].args).toEqual(['agent']);
    const env = Object.fromEntries((agent.containers[0].env as { name: string; value?: string }[]).map((e) => [e.name, e.value]));
    // The sessions Service inside the cluster: no DNS, ingress or hairpin route for an agent beside the control plane.
    expect(env['MARINER_CONTROL_PLANE_URL']).toBe(`http://mariner-sessions.${NAMESPACE}.svc:8080`);
    expect(env['MARINER_AGENT_OPS_PORT']).toBe('9090');
    expect(agent.containers[0].livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'ops' });
    expect(agent.containers[0].readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'ops' });
    const clusterRole = manifests.find((m) => m.kind === 'ClusterRole')!;
    expect(clusterRole['rules']).toEqual([{ apiGroups: [''], resources: ['nodes', 'pods'], verbs: ['get', 'list', 'watch'] }]);
    // A Role in the bootstrap project's namespace (default) and one for the runtimes (the release's namespace).
    expect(
      manifests
        .filter((m) => m.kind === 'Role')
        .map((m) => `${m.metadata.namespace}/${m.metadata.name}`)
        .sort(),
    ).toEqual(['default/mariner-agent', `${NAMESPACE}/mariner-agent-runtimes`]);
  });
});

describe('the chart follows the component registry (bin/components.ts)', () => {
  let manifests: Manifest[];
  let controlPlane: Manifest[];
  beforeAll(async () => {
    manifests = await render([]);
    // The S3 credentials are given in this example only.
    controlPlane = await render([path.join(EXAMPLES, 'control-plane.yaml')]);
  });

  const controlPlaneDeployments = (rendered: Manifest[]) =>
    rendered.filter((m) => m.kind === 'Deployment' && m.metadata.labels?.['app.kubernetes.io/component'] !== 'agent').map((m) => m.metadata.name);
  const deploymentsWithEnv = (rendered: Manifest[], name: string) =>
    deploymentsWith(rendered, name)
      .filter((d) => d !== 'mariner-agent')
      .sort();
  const servedWhere = (wanted: (components: readonly AnyComponent[]) => boolean) =>
    COMPONENT_NAMES.filter((name) => wanted(SERVED.get(name)!))
      .map((name) => `mariner-${name}`)
      .sort();

  it('one Deployment, and one entry in values and in values.schema.json, for each `mariner serve` component, and no other', () => {
    expect(controlPlaneDeployments(manifests).sort()).toEqual(COMPONENT_NAMES.map((name) => `mariner-${name}`).sort());
    const values = parseAllDocuments(readFileSync(path.join(CHART, 'values.yaml'), 'utf8'))[0]!.toJS() as { controlPlane: Record<string, unknown> };
    expect(Object.keys(values.controlPlane).sort()).toEqual([...COMPONENT_NAMES].sort());
    const schema = JSON.parse(readFileSync(path.join(CHART, 'values.schema.json'), 'utf8')) as {
      properties: { controlPlane: { properties: Record<string, unknown> } };
    };
    expect(Object.keys(schema.properties.controlPlane.properties).sort()).toEqual([...COMPONENT_NAMES].sort());
  });

  it('each Deployment and Service opens the ports `mariner serve` listens on: the public one, then one per subgraph', () => {
    for (const name of COMPONENT_NAMES) {
      const components = SERVED.get(name)!;
      const ports = servedPorts(components, 8080);
      const subgraphs = Object.entries(ports.subgraphs);
      // Port names: `http` for the public port; `graphql` for a component's only port, else the subgraph's name.
      const expected = [
        ...(ports.public !== undefined ? [{ name: 'http', port: ports.public }] : []),
        ...subgraphs.map(([subgraph, port]) => ({ name: subgraphs.length === 1 && ports.public === undefined ? 'graphql' : subgraph, port })),
      ];
      const container = find(manifests, 'Deployment', `mariner-${name}`)['spec'].template.spec.containers[0];
      const opened = (container.ports as { name: string; containerPort: number }[])
        .filter((p) => p.name !== 'ops' && p.name !== 'peer')
        .map((p) => ({ name: p.name, port: p.containerPort }));
      expect(opened, name).toEqual(expected);
      const service = (find(manifests, 'Service', `mariner-${name}`)['spec'].ports as { name: string; port: number }[])
        .filter((p) => p.name !== 'ops')
        .map((p) => ({ name: p.name, port: p.port }));
      expect(service, name).toEqual(expected);
    }
  });

  it('the database where a component has tables, the object store credentials where one reads or writes bytes, the peer port where the tunnels end', () => {
    expect(deploymentsWithEnv(manifests, 'DATABASE_URL')).toEqual(servedWhere(usesDatabase));
    expect(deploymentsWithEnv(controlPlane, 'MARINER_S3_SECRET_ACCESS_KEY')).toEqual(servedWhere((components) => components.some((c) => c.needs.objectStore)));
    expect(deploymentsWithEnv(manifests, 'MARINER_SESSIONS_PEER_PORT')).toEqual(
      servedWhere((components) => components.some((c) => c.provides?.includes('tunnels'))),
    );
  });
});

describe('the multi-cluster example', () => {
  const controlPlane = path.join(EXAMPLES, 'control-plane.yaml');
  const worker = path.join(EXAMPLES, 'worker.yaml');

  it('passes helm lint in both parts', async () => {
    for (const file of [controlPlane, worker]) {
      const { ok, output } = await runHelm(['lint', '--strict', CHART, '--namespace', NAMESPACE, '-f', file]);
      expect(output, file).toContain('0 chart(s) failed');
      expect(ok).toBe(true);
    }
  });

  it('renders the control plane alone: valid manifests, no agent, an autoscaled gateway', async () => {
    const manifests = await render([controlPlane]);
    expect(problemsOf(manifests)).toEqual([]);
    expect(plainCredentials(manifests)).toEqual([]);
    // The S3 keys go where bytes are read or written, and nowhere else.
    const withS3Keys = manifests.filter(
      (m) => m.kind === 'Deployment' && m['spec'].template.spec.containers[0].env.some((e: { name: string }) => e.name === 'MARINER_S3_SECRET_ACCESS_KEY'),
    );
    expect(withS3Keys.map((m) => m.metadata.name).sort()).toEqual([
      'mariner-batches',
      'mariner-files',
      'mariner-gateway',
      'mariner-inference',
      'mariner-models',
      'mariner-vectorstores',
    ]);
    expect(manifests.some((m) => m.metadata.name === 'mariner-agent')).toBe(false);
    const hpa = find(manifests, 'HorizontalPodAutoscaler', 'mariner-gateway');
    expect(hpa['spec']).toMatchObject({ minReplicas: 3, maxReplicas: 12, scaleTargetRef: { kind: 'Deployment', name: 'mariner-gateway' } });
    // An autoscaled Deployment leaves replicas to the HPA.
    expect(find(manifests, 'Deployment', 'mariner-gateway')['spec'].replicas).toBeUndefined();
    expect(find(manifests, 'PodDisruptionBudget', 'mariner-files')['spec'].maxUnavailable).toBe(1);
    const config = JSON.parse(find(manifests, 'ConfigMap', 'mariner-config')['data']['config.json']);
    expect(config).toMatchObject({
      MARINER_OIDC_ISSUER: 'https://dex.example.com',
      MARINER_OIDC_AUDIENCE: 'mariner',
      MARINER_S3_ENDPOINT: 'https://minio.storage.svc:9000',
      MARINER_MAX_FILE_BYTES: 2147483648,
    });
    expect(envOf(manifests, 'mariner-inference')).toMatchObject({ MARINER_RATE_LIMIT_RPM: '600', MARINER_RATE_LIMIT_TPM: '200000' });
    expect(serveConfigOf(manifests, 'inference').config.inference).toMatchObject({ rateLimitRequestsPerMinute: 600, rateLimitTokensPerMinute: 200_000 });
    // The vector index's settings only where vectors are.
    expect(envOf(manifests, 'mariner-vectorstores')).toMatchObject({ MARINER_VECTOR_INDEX: 'milvus', MARINER_MILVUS_ADDRESS: 'milvus.vector.svc:19530' });
    expect(serveConfigOf(manifests, 'vectorstores').config.vectorStores).toMatchObject({
      index: 'milvus',
      milvus: { address: 'milvus.vector.svc:19530', token: 'x'.repeat(40) },
    });
    // Milvus' token only where vectors are: the vectorstores component.
    const withToken = manifests.filter(
      (m) => m.kind === 'Deployment' && m['spec'].template.spec.containers[0].env.some((e: { name: string }) => e.name === 'MARINER_MILVUS_TOKEN'),
    );
    expect(withToken.map((m) => m.metadata.name)).toEqual(['mariner-vectorstores']);
    expect(find(manifests, 'Ingress', 'mariner')['spec'].tls).toEqual([{ hosts: ['mariner.example.com'], secretName: 'mariner-tls' }]);
  });

  it('renders a worker cluster alone: valid manifests, the agent with a Role in each of its namespaces', async () => {
    const manifests = await render([worker]);
    expect(problemsOf(manifests)).toEqual([]);
    expect(plainCredentials(manifests)).toEqual([]);
    expect(manifests.filter((m) => m.kind === 'Deployment').map((m) => m.metadata.name)).toEqual(['mariner-agent']);
    expect(manifests.some((m) => m.kind === 'Ingress' || m.kind === 'ConfigMap')).toBe(false);
    const roles = manifests.filter((m) => m.kind === 'Role');
    // No Role in the release's own namespace: the runtimes run in theirs.
    expect(roles.map((m) => m.metadata.namespace).sort()).toEqual(['mariner-runtimes', 'nvidia-gpu-operator', 'team-a', 'team-b']);
    // In the GPU operator's namespace, the device plugin ConfigMap only.
    expect(roles.find((m) => m.metadata.namespace === 'nvidia-gpu-operator')!['rules']).toEqual([
      { apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'create', 'update'] },
    ]);
    expect(roles.find((m) => m.metadata.namespace === 'team-a')!['rules']).toContainEqual({
      apiGroups: ['kueue.x-k8s.io'],
      resources: ['localqueues', 'workloads'],
      verbs: ['get', 'list', 'watch'],
    });
    // Users open notebooks through the Service proxy (subgraphs/sessions/notebookProxy.ts).
    expect(roles.find((m) => m.metadata.namespace === 'team-a')!['rules']).toContainEqual({
      apiGroups: [''],
      resources: ['services/proxy'],
      verbs: ['get', 'create', 'update', 'patch', 'delete'],
    });
    const env = find(manifests, 'Deployment', 'mariner-agent')['spec'].template.spec.containers[0].env as { name: string; value?: string }[];
    expect(env).toContainEqual({ name: 'MARINER_CONTROL_PLANE_URL', value: 'https://mariner.example.com' });
    expect(env).toContainEqual({ name: 'MARINER_RUNTIME_IMAGE_VLLM', value: 'vllm/vllm-openai:v0.8.5' });
  });
});

/**
 * The ranged settings of lib/config the chart offers: their place in values, their environment name, the
 * one component that reads them (its Deployment gets them as env),
 * and lib/config's range, which values.schema.json mirrors.
 */
const RANGED_SETTINGS: { path: string; env: string; component: ComponentName; min: number; max: number }[] = [
  { path: 'global.inference.rateLimits.requestsPerMinute', env: 'MARINER_RATE_LIMIT_RPM', component: 'inference', min: 0, max: 100_000_000 },
  { path: 'global.inference.rateLimits.tokensPerMinute', env: 'MARINER_RATE_LIMIT_TPM', component: 'inference', min: 0, max: 1_000_000_000 },
  { path: 'global.inference.usage.flushIntervalMs', env: 'MARINER_USAGE_FLUSH_MS', component: 'inference', min: 10, max: 600_000 },
  { path: 'global.inference.usage.retentionDays', env: 'MARINER_USAGE_RETENTION_DAYS', component: 'inference', min: 0, max: 36_500 },
  { path: 'global.inference.requestWaitSeconds', env: 'MARINER_INFERENCE_WAIT_SECONDS', component: 'inference', min: 0, max: 3600 },
  { path: 'global.inference.runtimeFreshSeconds', env: 'MARINER_RUNTIME_FRESH_SECONDS', component: 'inference', min: 5, max: 3600 },
  { path: 'global.jobs.dispatchIntervalMs', env: 'MARINER_JOB_DISPATCH_INTERVAL_MS', component: 'jobs', min: 100, max: 600_000 },
  { path: 'global.jobs.rescheduleAfterSeconds', env: 'MARINER_JOB_RESCHEDULE_AFTER_SECONDS', component: 'jobs', min: 5, max: 7 * 24 * 3600 },
  { path: 'global.subscriptions.maxPerConnection', env: 'MARINER_WS_MAX_PER_CONNECTION', component: 'gateway', min: 1, max: 100_000 },
  { path: 'global.subscriptions.maxPerUser', env: 'MARINER_WS_MAX_PER_USER', component: 'gateway', min: 1, max: 1_000_000 },
  { path: 'global.subscriptions.maxQueuedEvents', env: 'MARINER_WS_MAX_QUEUED_EVENTS', component: 'gateway', min: 1, max: 1_000_000 },
  { path: 'global.subscriptions.revalidateIntervalMs', env: 'MARINER_WS_REVALIDATE_MS', component: 'gateway', min: 100, max: 3_600_000 },
  { path: 'global.subscriptions.initTimeoutMs', env: 'MARINER_WS_INIT_TIMEOUT_MS', component: 'gateway', min: 100, max: 600_000 },
  { path: 'global.vectorStores.embeddingBatchSize', env: 'MARINER_EMBEDDING_BATCH_SIZE', component: 'vectorstores', min: 1, max: 2048 },
  { path: 'global.vectorStores.ingestionConcurrency', env: 'MARINER_INGESTION_CONCURRENCY', component: 'vectorstores', min: 1, max: 64 },
  { path: 'global.vectorStores.ingestionLeaseSeconds', env: 'MARINER_INGESTION_LEASE_SECONDS', component: 'vectorstores', min: 2, max: 3600 },
];

/** The other settings added with them (not ranged), by environment name. */
const OTHER_SETTINGS = [
  'MARINER_BATCH_IMAGES',
  'MARINER_NOTEBOOK_IMAGES',
  'MARINER_EMBEDDING_MODEL',
  'MARINER_VECTOR_METRIC',
  'MARINER_MILVUS_ADDRESS',
  'MARINER_FINE_TUNING_IMAGE',
  'MARINER_FINE_TUNING_COMMAND',
  'MARINER_WANDB_API_KEY_SECRET',
  'MARINER_WANDB_API_KEY_SECRET_KEY',
  'MARINER_KUEUE_DEFAULT_QUEUE',
  'MARINER_RUNTIMES',
  'MARINER_MODEL_PRICES',
  'MARINER_DCGM_EXPORTER_NAMESPACE',
  'MARINER_DCGM_EXPORTER_URLS',
];

/** A values file from dotted paths (`global.jobs.dispatchIntervalMs`) and their values. */
function valuesAt(name: string, settings: Record<string, unknown>): string {
  const values: Record<string, unknown> = {};
  for (const [dotted, value] of Object.entries(settings)) {
    const keys = dotted.split('.');
    let at = values;
    for (const key of keys.slice(0, -1)) at = (at[key] ??= {}) as Record<string, unknown>;
    at[keys.at(-1)!] = value;
  }
  return valuesFile(name, stringify(values));
}

/** Which Deployments carry an env entry of that name. */
function deploymentsWith(manifests: Manifest[], name: string): string[] {
  return manifests
    .filter((m) => m.kind === 'Deployment' && (m['spec'].template.spec.containers[0].env as { name: string }[]).some((e) => e.name === name))
    .map((m) => m.metadata.name);
}

describe('settings of lib/config through values: set only where given, on the Deployment that reads them', () => {
  it('with the default values none is set: the defaults stay in code', async () => {
    const manifests = await render([]);
    const config = JSON.parse(find(manifests, 'ConfigMap', 'mariner-config')['data']['config.json']) as Record<string, unknown>;
    for (const name of [...RANGED_SETTINGS.map((s) => s.env), ...OTHER_SETTINGS]) {
      expect(deploymentsWith(manifests, name), name).toEqual([]);
      expect(config, name).not.toHaveProperty(name);
    }
  });

  it('each goes to its component only, and `mariner serve` takes the lowest and the highest value of each range, and refuses one past either end', async () => {
    for (const bound of ['min', 'max'] as const) {
      const file = valuesAt(`${bound}.yaml`, Object.fromEntries(RANGED_SETTINGS.map((s) => [s.path, s[bound]])));
      const manifests = await render([file]);
      expect(problemsOf(manifests)).toEqual([]);
      for (const setting of RANGED_SETTINGS) {
        expect(deploymentsWith(manifests, setting.env), setting.env).toEqual([`mariner-${setting.component}`]);
        expect(envOf(manifests, `mariner-${setting.component}`)[setting.env], setting.env).toBe(String(setting[bound]));
      }
      for (const component of new Set(RANGED_SETTINGS.map((s) => s.component))) expect(() => serveConfigOf(manifests, component), component).not.toThrow();
      // The code's range ends where the schema's does: one step further, `mariner serve` refuses it, naming it.
      for (const setting of RANGED_SETTINGS) {
        const past = bound === 'min' ? setting.min - 1 : setting.max + 1;
        const env = { ...envOf(manifests, `mariner-${setting.component}`), MARINER_CONFIG_FILE: '', [setting.env]: String(past) };
        expect(() => loadServeConfig(setting.component, env), setting.env).toThrow(
          `${setting.env} must be an integer between ${setting.min} and ${setting.max}`,
        );
      }
    }
    const some = await render([
      valuesAt('some.yaml', {
        'global.inference.rateLimits.requestsPerMinute': 600,
        'global.inference.usage.retentionDays': 0,
        'global.jobs.dispatchIntervalMs': 1000,
      }),
    ]);
    expect(serveConfigOf(some, 'inference').config.inference).toMatchObject({
      rateLimitRequestsPerMinute: 600,
      rateLimitTokensPerMinute: 0,
      usageRetentionDays: 0,
    });
    expect(serveConfigOf(some, 'jobs').config.jobs.dispatchIntervalMs).toBe(1000);
  });

  it("a value past lib/config's range fails helm template and helm lint, with its path and the bound", async () => {
    const below = valuesAt('below.yaml', Object.fromEntries(RANGED_SETTINGS.map((s) => [s.path, s.min - 1])));
    const { ok, output } = await runHelm(['template', 'mariner', CHART, '--namespace', NAMESPACE, '-f', below]);
    expect(ok).toBe(false);
    // (Helm writes large numbers its own way: 600,001; 1×10⁰⁶.)
    for (const setting of RANGED_SETTINGS) expect(output).toContain(`at '/${setting.path.replaceAll('.', '/')}': minimum: got `);
    expect(output).toContain("at '/global/inference/rateLimits/requestsPerMinute': minimum: got -1, want 0");
    const above = valuesAt('above.yaml', Object.fromEntries(RANGED_SETTINGS.map((s) => [s.path, s.max + 1])));
    const lint = await runHelm(['lint', '--strict', CHART, '--namespace', NAMESPACE, '-f', above]);
    expect(lint.ok).toBe(false);
    for (const setting of RANGED_SETTINGS) expect(lint.output).toContain(`at '/${setting.path.replaceAll('.', '/')}': maximum: got `);
    expect(lint.output).toContain("at '/global/vectorStores/ingestionConcurrency': maximum: got 65, want 64");
    const fraction = valuesAt('fraction.yaml', { 'global.inference.usage.flushIntervalMs': 1.5 });
    expect((await runHelm(['template', 'mariner', CHART, '--namespace', NAMESPACE, '-f', fraction])).output).toContain(
      "at '/global/inference/usage/flushIntervalMs': got number, want null or integer",
    );
  });

  it("image presets, the embedding model and metric, Milvus with its token from a Secret, and the agent's fine-tuning settings", async () => {
    const manifests = await render([
      valuesAt('others.yaml', {
        'global.jobs.batchImages': { 'pytorch-2.5': 'pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime' },
        'global.jobs.notebookImages': { lab: 'quay.io/jupyter/base-notebook:2025-01-06' },
        'global.inference.modelPrices': { 'meta-llama-3.1-8b': { input: 150000, output: 600000 } },
        'global.vectorStores': {
          index: 'milvus',
          embeddingModel: 'bge-small',
          metric: 'l2',
          milvus: { address: 'milvus.vector.svc:19530', ssl: true, tokenSecretRef: { name: 'milvus', key: 'token' } },
        },
        'global.kueue': { enabled: true, defaultQueue: 'gpu-queue' },
        'worker.runtimes.enabled': false,
        'worker.dcgmExporter': { namespace: 'nvidia-gpu-operator', urls: ['http://10.0.0.7:9400/metrics', 'http://10.0.0.8:9400/metrics'] },
        'worker.fineTuning': {
          image: 'registry.example.com/trainer:1.0',
          command: ['python', '-m', 'trainer'],
          wandbApiKeySecret: { name: 'wandb', key: 'token' },
        },
      }),
    ]);
    expect(problemsOf(manifests)).toEqual([]);
    expect(plainCredentials(manifests)).toEqual([]);
    for (const name of ['MARINER_BATCH_IMAGES', 'MARINER_NOTEBOOK_IMAGES']) expect(deploymentsWith(manifests, name)).toEqual(['mariner-jobs']);
    // Cost budgets' default prices reach the inference component, as lib/config reads them.
    expect(deploymentsWith(manifests, 'MARINER_MODEL_PRICES')).toEqual(['mariner-inference']);
    expect(serveConfigOf(manifests, 'inference').config.inference.modelPrices).toEqual({
      'meta-llama-3.1-8b': { inputMicrosPerMillion: 150000, outputMicrosPerMillion: 600000 },
    });
    for (const name of ['MARINER_EMBEDDING_MODEL', 'MARINER_VECTOR_METRIC', 'MARINER_VECTOR_INDEX', 'MARINER_MILVUS_ADDRESS', 'MARINER_MILVUS_TOKEN'])
      expect(deploymentsWith(manifests, name), name).toEqual(['mariner-vectorstores']);
    expect(serveConfigOf(manifests, 'jobs').config.jobs).toMatchObject({
      batchImages: { 'pytorch-2.5': 'pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime' },
      notebookImages: { lab: 'quay.io/jupyter/base-notebook:2025-01-06' },
    });
    expect(serveConfigOf(manifests, 'vectorstores').config.vectorStores).toMatchObject({
      index: 'milvus',
      defaultEmbeddingModel: 'bge-small',
      metric: 'l2',
      milvus: { address: 'milvus.vector.svc:19530', ssl: true, token: 'x'.repeat(40) },
    });
    // The agent reads its settings as agent/kubernetesExecutor.ts does.
    const agentEnv = envOf(manifests, 'mariner-agent');
    expect(dcgmSettingsFromEnv(agentEnv)).toMatchObject({
      selector: DEFAULT_DCGM_SELECTOR,
      namespace: 'nvidia-gpu-operator',
      urls: ['http://10.0.0.7:9400/metrics', 'http://10.0.0.8:9400/metrics'],
    });
    expect(jobSettingsFromEnv(agentEnv)).toEqual({
      image: 'registry.example.com/trainer:1.0',
      command: ['python', '-m', 'trainer'],
      defaultQueue: 'gpu-queue',
      wandbApiKeySecret: { name: 'wandb', key: 'token' },
    });
    expect(runtimeSettingsFromEnv(agentEnv)).toBeNull();
    expect(deploymentsWith(manifests, 'MARINER_FINE_TUNING_IMAGE')).toEqual(['mariner-agent']);

    const bad = valuesAt('bad-others.yaml', {
      'global.vectorStores.metric': 'dot',
      'global.jobs.batchImages': { broken: '' },
      'worker.fineTuning.command': 'python -m trainer',
    });
    const { ok, output } = await runHelm(['template', 'mariner', CHART, '--namespace', NAMESPACE, '-f', bad]);
    expect(ok).toBe(false);
    expect(output).toContain("at '/global/vectorStores/metric': value must be one of '', 'cosine', 'l2'");
    expect(output).toContain("at '/global/jobs/batchImages/broken': minLength: got 0, want 1");
    expect(output).toContain("at '/worker/fineTuning/command': got string, want array");
  });

  it("the agent's autoscaler: off by default; when on, its settings as the agent reads them, fractions kept", async () => {
    expect(deploymentsWith(await render([]), 'MARINER_AUTOSCALER_ENABLED')).toEqual([]);
    const manifests = await render([
      valuesAt('autoscaler.yaml', {
        'worker.runtimes.autoscaler': {
          enabled: true,
          targetInFlight: 2.5,
          minReplicas: 0,
          maxReplicas: 6,
          maxScaleDownRate: 0.25,
          scaleToZeroGraceSeconds: 900,
          models: { 'big-model': { maxReplicas: 16 } },
          schedules: { 'big-model': [{ cron: '0 19 * * 1-5', timeZone: 'Europe/Berlin', minReplicas: 0, maxReplicas: 0 }] },
        },
      }),
    ]);
    expect(problemsOf(manifests)).toEqual([]);
    const agentEnv = envOf(manifests, 'mariner-agent');
    expect(deploymentsWith(manifests, 'MARINER_AUTOSCALER_ENABLED')).toEqual(['mariner-agent']);
    expect(agentEnv).not.toHaveProperty('MARINER_AUTOSCALER_METRICS_WINDOW_SECONDS');
    expect(loadConfig(agentEnv).autoscaler).toEqual({
      enabled: true,
      syncPeriodMs: 2000,
      defaults: {
        targetInFlight: 2.5,
        minReplicas: 0,
        maxReplicas: 6,
        maxScaleUpRate: 3,
        maxScaleDownRate: 0.25,
        metricsWindowSeconds: 60,
        scaleToZeroGraceSeconds: 900,
      },
      models: { 'big-model': { maxReplicas: 16 } },
      schedules: { 'big-model': [{ cron: '0 19 * * 1-5', timeZone: 'Europe/Berlin', minReplicas: 0, maxReplicas: 0, onDemand: false }] },
    });
    const bad = valuesAt('bad-autoscaler.yaml', {
      'worker.runtimes.autoscaler': {
        enabled: true,
        maxScaleDownRate: 2,
        minReplicas: 1.5,
        models: { m: { replicas: 3 } },
        schedules: { m: [{ cron: '0 9 * * *', maxReplicas: 2 }] },
      },
    });
    const { ok, output } = await runHelm(['template', 'mariner', CHART, '--namespace', NAMESPACE, '-f', bad]);
    expect(ok).toBe(false);
    expect(output).toContain("at '/worker/runtimes/autoscaler/maxScaleDownRate': maximum: got 2, want 1");
    expect(output).toContain("at '/worker/runtimes/autoscaler/minReplicas': got number, want");
    expect(output).toContain("at '/worker/runtimes/autoscaler/models/m': additional properties 'replicas' not allowed");
    expect(output).toContain("at '/worker/runtimes/autoscaler/schedules/m/0': missing property 'minReplicas'");
  });
});

describe('bad values fail at install with a message naming the value', () => {
  it('a missing database secret', async () => {
    const file = valuesFile('no-database.yaml', 'global:\n  database:\n    secretRef: null\n');
    const { ok, output } = await runHelm(['template', 'mariner', CHART, '--namespace', NAMESPACE, '-f', file]);
    expect(ok).toBe(false);
    expect(output).toContain('global.database.secretRef.name is required: the name of an existing Secret holding the PostgreSQL URL');
  });

  it('a worker without its registration key secret, or without the control plane URL', async () => {
    const noKey = valuesFile(
      'no-key.yaml',
      'tags:\n  control-plane: false\nworker:\n  controlPlaneUrl: https://cp.example.com\n  registrationKeySecretRef:\n    name: ""\n',
    );
    expect((await runHelm(['template', 'mariner', CHART, '--namespace', NAMESPACE, '-f', noKey])).output).toContain(
      'worker.registrationKeySecretRef.name is required',
    );
    const noUrl = valuesFile('no-url.yaml', 'tags:\n  control-plane: false\nworker:\n  registrationKeySecretRef:\n    name: gpu-east\n');
    expect((await runHelm(['template', 'mariner', CHART, '--namespace', NAMESPACE, '-f', noUrl])).output).toContain('worker.controlPlaneUrl is required');
  });

  it('OIDC on: the audience defaults to the client id mariner and goes with the issuer; an empty one is refused', async () => {
    const on = valuesFile('oidc-on.yaml', 'global:\n  oidc:\n    issuer: https://dex.example.com\n');
    const manifests = await render([on]);
    expect(serveConfigOf(manifests, 'gateway').config.oidc).toMatchObject({ issuer: 'https://dex.example.com', audience: 'mariner' });
    const noAudience = valuesFile('oidc-no-audience.yaml', 'global:\n  oidc:\n    issuer: https://dex.example.com\n    audience: ""\n');
    const refused = await runHelm(['template', 'mariner', CHART, '--namespace', NAMESPACE, '-f', noAudience]);
    expect(refused.ok).toBe(false);
    expect(refused.output).toContain("at '/global/oidc/audience': minLength: got 0, want 1");
    const unchecked = await runHelm(['template', 'mariner', CHART, '--namespace', NAMESPACE, '--skip-schema-validation', '-f', noAudience]);
    expect(unchecked.output).toContain('global.oidc.audience is required with global.oidc.issuer');
    // OIDC off: no OIDC setting at all, whatever the audience.
    expect(JSON.parse(find(await render([]), 'ConfigMap', 'mariner-config')['data']['config.json'])).not.toHaveProperty('MARINER_OIDC_AUDIENCE');
  });

  it('a misspelt key, a wrong type, or a plain-text credential where a Secret reference belongs (values.schema.json)', async () => {
    const misspelt = valuesFile('misspelt.yaml', 'global:\n  databse: {}\n');
    expect((await runHelm(['template', 'mariner', CHART, '--namespace', NAMESPACE, '-f', misspelt])).output).toMatch(
      /at '\/global': additional properties 'databse' not allowed/,
    );
    const wrongType = valuesFile('wrong-type.yaml', 'controlPlane:\n  gateway:\n    replicas: "three"\n');
    expect((await runHelm(['template', 'mariner', CHART, '--namespace', NAMESPACE, '-f', wrongType])).output).toMatch(/at '\/controlPlane\/gateway\/replicas'/);
    const plain = valuesFile('plain.yaml', 'global:\n  database:\n    url: postgres://user:password@db/mariner\n');
    expect((await runHelm(['template', 'mariner', CHART, '--namespace', NAMESPACE, '-f', plain])).output).toMatch(
      /at '\/global\/database': additional properties 'url' not allowed/,
    );
  });
});
