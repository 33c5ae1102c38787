import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments, stringify } from 'yaml';
import { validateManifest } from '../agent/kubernetes/index.js';
import { loadConfig } from '../lib/config.js';
import { helmPath } from './support/kubectl.js';

/**
 * The chart as an operator's first `helm install` renders it (issue 23): the agent's Roles never grant
 * Secrets reads or exec in a namespace a project can be assigned, the platform refuses those namespaces,
 * the generated Secrets are consumed by both sides, migrations run as a hook before the Deployments, and
 * the ingress carries what streaming needs.
 */

const execFileAsync = promisify(execFile);
const CHART = fileURLToPath(new URL('../charts/mariner', import.meta.url));
const WORKER_EXAMPLE = path.join(CHART, 'examples', 'multi-cluster', 'worker.yaml');
const NAMESPACE = 'mariner';

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: any;
}
interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

let helm: string;
let scratch: string;

async function helmRun(args: string[]): Promise<{ ok: boolean; output: string }> {
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

async function render(values: Record<string, unknown>[] = [], files: string[] = []): Promise<Manifest[]> {
  const args = ['template', 'mariner', CHART, '--namespace', NAMESPACE, ...files.flatMap((f) => ['-f', f])];
  values.forEach((v, i) => {
    const file = path.join(scratch, `values-${Date.now()}-${i}.yaml`);
    writeFileSync(file, stringify(v));
    args.push('-f', file);
  });
  const { ok, output } = await helmRun(args);
  if (!ok) throw new Error(`helm template failed:\n${output}`);
  return parseAllDocuments(output)
    .map((doc) => doc.toJS() as Manifest | null)
    .filter((m): m is Manifest => m !== null);
}

async function refusal(values: Record<string, unknown>): Promise<string> {
  const file = path.join(scratch, `bad-${Date.now()}.yaml`);
  writeFileSync(file, stringify(values));
  const { ok, output } = await helmRun(['template', 'mariner', CHART, '--namespace', NAMESPACE, '-f', file]);
  expect(ok).toBe(false);
  return output;
}

const find = (manifests: Manifest[], kind: string, name: string) => {
  const found = manifests.find((m) => m.kind === kind && m.metadata.name === name);
  if (!found) throw new Error(`no ${kind}/${name}`);
  return found;
};
const envOf = (manifests: Manifest[], deployment: string) =>
  find(manifests, 'Deployment', deployment)['spec'].template.spec.containers[0].env as { name: string; value?: string; valueFrom?: any }[];
const envValue = (manifests: Manifest[], deployment: string, name: string) => envOf(manifests, deployment).find((e) => e.name === name);

/** The namespaces a project could be assigned: every namespace but those the platform refuses. */
function assignable(manifests: Manifest[], namespace: string): boolean {
  const reserved = envValue(manifests, 'mariner-users', 'MARINER_RESERVED_NAMESPACES')?.value ?? '';
  return !['kube-system', 'kube-public', 'kube-node-lease', ...reserved.split(',')].includes(namespace);
}

/** Rules that let the agent read Secrets (get/list/watch, any name but an explicit resourceNames list) or exec. */
function dangerousRules(role: Manifest): Rule[] {
  return (role['rules'] as Rule[]).filter((rule) => {
    const core = rule.apiGroups.includes('') || rule.apiGroups.includes('*');
    const readsSecrets =
      core &&
      rule.resources.some((r) => r === 'secrets' || r === '*') &&
      rule.verbs.some((v) => ['get', 'list', 'watch', '*'].includes(v)) &&
      !(rule.resourceNames && rule.resourceNames.length > 0 && !rule.verbs.some((v) => v === 'list' || v === 'watch'));
    const execs = core && rule.resources.some((r) => ['pods/exec', 'pods/attach', 'pods/portforward', 'pods/*', '*'].includes(r));
    return readsSecrets || execs;
  });
}

beforeAll(async () => {
  helm = await helmPath();
  scratch = mkdtempSync(path.join(tmpdir(), 'mariner-helm-security-'));
}, 120_000);

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('least privilege: the agent holds no Secrets reads and no exec where projects can be assigned', () => {
  const cases: [string, Record<string, unknown>[], string[]][] = [
    ['the default values', [], []],
    [
      'W&B integration and Kueue on',
      [{ worker: { namespaces: ['team-a'], fineTuning: { wandbApiKeySecret: { name: 'wandb', key: 'k' } } }, global: { kueue: { enabled: true } } }],
      [],
    ],
    [
      'a runtimes namespace of its own and the GPU operator managed',
      [{ worker: { runtimes: { namespace: 'gpu-runtimes' }, gpuOperator: { manageDevicePluginConfig: true } } }],
      [],
    ],
    ['the multi-cluster worker example', [], [WORKER_EXAMPLE]],
    [
      'worker.namespaces: dynamic, with the W&B integration and Kueue on',
      [{ worker: { namespaces: 'dynamic', fineTuning: { wandbApiKeySecret: { name: 'wandb', key: 'k' } } }, global: { kueue: { enabled: true } } }],
      [],
    ],
  ];
  for (const [name, values, files] of cases) {
    it(`${name}: no Role in an assignable namespace grants Secrets get/list/watch or pods/exec, attach or port-forward`, async () => {
      const manifests = await render(values, files);
      for (const m of manifests) expect(() => validateManifest(m), `${m.kind}/${m.metadata.name}`).not.toThrow();
      const roles = manifests.filter((m) => m.kind === 'Role' || m.kind === 'ClusterRole');
      expect(roles.length).toBeGreaterThan(1);
      for (const role of roles) {
        // A ClusterRole applies in every namespace; a worker-only release has no users Deployment: every namespace but its own counts.
        const hasUsers = manifests.some((m) => m.kind === 'Deployment' && m.metadata.name === 'mariner-users');
        const reachable =
          role.kind === 'ClusterRole' || (hasUsers ? assignable(manifests, role.metadata.namespace!) : role.metadata.namespace !== 'mariner-runtimes');
        if (reachable) expect(dangerousRules(role), `${role.kind} ${role.metadata.namespace}/${role.metadata.name}`).toEqual([]);
      }
    });
  }

  it('the W&B API key Secret is the one Secret the agent may read in a project namespace, by name', async () => {
    const manifests = await render([{ worker: { namespaces: ['team-a'], fineTuning: { wandbApiKeySecret: { name: 'wandb', key: 'k' } } } }]);
    const role = manifests.find((m) => m.kind === 'Role' && m.metadata.namespace === 'team-a')!;
    const secretRules = (role['rules'] as Rule[]).filter((r) => r.resources.includes('secrets'));
    expect(secretRules).toEqual([
      { apiGroups: [''], resources: ['secrets'], verbs: ['create', 'update', 'patch', 'delete'] },
      { apiGroups: [''], resources: ['secrets'], resourceNames: ['wandb'], verbs: ['get'] },
    ]);
  });

  it('exec through /v1/sessions is an explicit opt-in on both sides: the sessions setting and the agent Role', async () => {
    const off = await render();
    expect(envValue(off, 'mariner-sessions', 'MARINER_SESSIONS_EXEC')).toBeUndefined();
    const on = await render([{ global: { sessions: { allowExec: true } } }]);
    expect(envValue(on, 'mariner-sessions', 'MARINER_SESSIONS_EXEC')).toEqual({ name: 'MARINER_SESSIONS_EXEC', value: 'true' });
    const role = on.find((m) => m.kind === 'Role' && m.metadata.namespace === 'default')!;
    expect(role['rules']).toContainEqual({ apiGroups: [''], resources: ['pods/exec', 'pods/attach', 'pods/portforward'], verbs: ['create', 'get'] });
    expect(loadConfig({ MARINER_SESSIONS_EXEC: 'true' }).sessions.allowExec).toBe(true);
    expect(loadConfig({}).sessions.allowExec).toBe(false);
  });

  it('worker.namespaces: dynamic: the agent binds one ClusterRole of the project rules (no Secrets reads, no exec) and no other role', async () => {
    const values = { worker: { namespaces: 'dynamic', fineTuning: { wandbApiKeySecret: { name: 'wandb', key: 'k' } } } };
    const dynamic = await render([values]);
    const projectRole = find(dynamic, 'ClusterRole', 'mariner-agent-project-mariner');
    // The same rules as a static project namespace's Role: what a project's work needs, nothing more.
    const staticRole = (await render([{ ...values, worker: { ...values.worker, namespaces: ['team-a'] } }])).find(
      (m) => m.kind === 'Role' && m.metadata.namespace === 'team-a',
    )!;
    expect(projectRole['rules']).toEqual(staticRole['rules']);
    expect(dangerousRules(projectRole)).toEqual([]);
    // The chart binds it nowhere and creates no Role in any project namespace: the agent binds it as projects are assigned.
    const bindings = dynamic.filter((m) => m.kind === 'RoleBinding' || m.kind === 'ClusterRoleBinding');
    expect(bindings.filter((b) => b.roleRef.name === projectRole.metadata.name)).toEqual([]);
    expect(dynamic.filter((m) => m.kind === 'Role').map((r) => r.metadata.name)).toEqual(['mariner-agent-runtimes']);
    // Binding rights: `bind` of that ClusterRole only, by name; RoleBindings deleted by the agent's binding's name only.
    const binder = find(dynamic, 'ClusterRole', 'mariner-agent-project-mariner-binder');
    expect(binder['rules']).toEqual([
      { apiGroups: ['rbac.authorization.k8s.io'], resources: ['clusterroles'], resourceNames: ['mariner-agent-project-mariner'], verbs: ['bind'] },
      { apiGroups: ['rbac.authorization.k8s.io'], resources: ['rolebindings'], verbs: ['get', 'list', 'create'] },
      { apiGroups: ['rbac.authorization.k8s.io'], resources: ['rolebindings'], resourceNames: ['mariner-agent-project'], verbs: ['delete'] },
    ]);
    const allRules = dynamic.filter((m) => m.kind === 'Role' || m.kind === 'ClusterRole').flatMap((r) => r['rules'] as Rule[]);
    for (const rule of allRules.filter((r) => r.verbs.some((v) => ['bind', 'escalate', '*'].includes(v))))
      expect(rule.resourceNames).toEqual(['mariner-agent-project-mariner']);
    expect(
      allRules.filter((r) => r.resources.some((x) => ['roles', 'clusterroles', 'clusterrolebindings', '*'].includes(x)) && !r.verbs.every((v) => v === 'bind')),
    ).toEqual([]);
    const binderBinding = find(dynamic, 'ClusterRoleBinding', 'mariner-agent-project-mariner-binder');
    expect(binderBinding['subjects']).toEqual([{ kind: 'ServiceAccount', name: 'mariner-agent', namespace: NAMESPACE }]);
    // The agent is told which role to bind, as whom, and where never to.
    expect(envValue(dynamic, 'mariner-agent', 'MARINER_AGENT_PROJECT_CLUSTER_ROLE')?.value).toBe('mariner-agent-project-mariner');
    expect(envValue(dynamic, 'mariner-agent', 'MARINER_AGENT_SERVICE_ACCOUNT')?.value).toBe('mariner-agent');
    expect(envValue(dynamic, 'mariner-agent', 'MARINER_RESERVED_NAMESPACES')?.value).toBe(
      envValue(dynamic, 'mariner-users', 'MARINER_RESERVED_NAMESPACES')?.value,
    );
    // A list keeps the static Roles and gives the agent no binding rights.
    const listed = await render();
    expect(listed.some((m) => m.metadata.name.endsWith('-binder'))).toBe(false);
    expect(envValue(listed, 'mariner-agent', 'MARINER_AGENT_PROJECT_CLUSTER_ROLE')).toBeUndefined();
    expect(await refusal({ worker: { namespaces: 'all' } })).toContain("value must be 'dynamic'");
  });

  it('the release, runtimes and GPU operator namespaces are reserved on the platform, and a project namespace naming one fails the install', async () => {
    const manifests = await render([
      { worker: { runtimes: { namespace: 'gpu-runtimes' }, gpuOperator: { manageDevicePluginConfig: true } }, global: { reservedNamespaces: ['ops'] } },
    ]);
    const reserved = envValue(manifests, 'mariner-users', 'MARINER_RESERVED_NAMESPACES')!.value!;
    expect(reserved.split(',').sort()).toEqual(['gpu-runtimes', NAMESPACE, 'nvidia-gpu-operator', 'ops'].sort());
    expect(loadConfig({ MARINER_RESERVED_NAMESPACES: reserved }).reservedNamespaces.sort()).toEqual(reserved.split(',').sort());
    for (const namespace of [NAMESPACE, 'gpu-runtimes']) {
      expect(await refusal({ worker: { namespaces: [namespace], runtimes: { namespace: 'gpu-runtimes' } } })).toContain(
        `worker.namespaces must not name ${namespace}: it is the release's, the runtimes' or the GPU operator's namespace`,
      );
    }
  });
});

describe('one install on one cluster', () => {
  it('generates the internal token, the admin key and the registration key once; the clusters component and the agent read the same registration Secret', async () => {
    const manifests = await render();
    const secrets = manifests.filter((m) => m.kind === 'Secret');
    expect(secrets.map((s) => s.metadata.name).sort()).toEqual(['mariner-admin-api-key', 'mariner-internal-token', 'mariner-registration']);
    for (const secret of secrets) expect(secret.metadata.annotations?.['helm.sh/resource-policy']).toBe('keep');
    const registration = find(manifests, 'Secret', 'mariner-registration')['stringData'].registrationKey as string;
    expect(loadConfig({ MARINER_DEFAULT_CLUSTER_KEY: registration }).clusters.defaultClusterKey).toBe(registration);
    expect(loadConfig({ MARINER_ADMIN_API_KEY: find(manifests, 'Secret', 'mariner-admin-api-key')['stringData'].apiKey }).adminApiKey).toMatch(/^sk-/);
    const ref = { secretKeyRef: { name: 'mariner-registration', key: 'registrationKey' } };
    expect(envValue(manifests, 'mariner-clusters', 'MARINER_DEFAULT_CLUSTER_KEY')?.valueFrom).toEqual(ref);
    expect(envValue(manifests, 'mariner-agent', 'MARINER_REGISTRATION_KEY')?.valueFrom).toEqual(ref);
    expect(envValue(manifests, 'mariner-users', 'MARINER_ADMIN_API_KEY')?.valueFrom).toEqual({
      secretKeyRef: { name: 'mariner-admin-api-key', key: 'apiKey' },
    });
    for (const deployment of manifests.filter((m) => m.kind === 'Deployment' && m.metadata.name !== 'mariner-agent')) {
      expect(envValue(manifests, deployment.metadata.name, 'MARINER_INTERNAL_TOKEN_SECRET')?.valueFrom).toEqual({
        secretKeyRef: { name: 'mariner-internal-token', key: 'secret' },
      });
    }
    // Named Secrets are used as they are, and nothing is generated for them.
    const named = await render([
      { global: { internalToken: { secretRef: { name: 'own-token', key: 't' } }, adminApiKey: { secretRef: { name: 'own-admin', key: 'k' } } } },
    ]);
    expect(named.filter((m) => m.kind === 'Secret').map((s) => s.metadata.name)).toEqual(['mariner-registration']);
  });

  it('runs the migrations as a pre-install and pre-upgrade hook Job (before any Deployment), with the database URL only', async () => {
    const manifests = await render();
    const job = find(manifests, 'Job', 'mariner-migrations');
    expect(job.metadata.annotations).toMatchObject({ 'helm.sh/hook': 'pre-install,pre-upgrade', 'helm.sh/hook-weight': '-5' });
    const container = job['spec'].template.spec.containers[0];
    expect(container.args).toEqual(['serve', '--migrate-only']);
    expect(container.env.map((e: { name: string }) => e.name)).toEqual(['DATABASE_URL', 'MARINER_LOG_LEVEL']);
    // No Deployment is a hook: Helm applies them after the pre-install hooks succeed.
    expect(manifests.filter((m) => m.kind === 'Deployment' && m.metadata.annotations?.['helm.sh/hook'])).toEqual([]);
    expect((await render([{ migrations: { enabled: false } }])).some((m) => m.kind === 'Job')).toBe(false);
  });

  it('a small database pool per pod, a ServiceAccount per component with its annotations, app.kubernetes.io/name on every pod', async () => {
    const manifests = await render([
      { controlPlane: { files: { databasePoolSize: 8, serviceAccount: { annotations: { 'eks.amazonaws.com/role-arn': 'arn:aws:iam::1:role/files' } } } } },
    ]);
    expect(envValue(manifests, 'mariner-users', 'MARINER_DB_POOL_SIZE')?.value).toBe('4');
    expect(envValue(manifests, 'mariner-files', 'MARINER_DB_POOL_SIZE')?.value).toBe('8');
    expect(envValue(manifests, 'mariner-rbac', 'MARINER_DB_POOL_SIZE')).toBeUndefined();
    expect(loadConfig({ MARINER_DB_POOL_SIZE: '8' }).databasePoolSize).toBe(8);
    expect(find(manifests, 'ServiceAccount', 'mariner-files').metadata.annotations).toEqual({ 'eks.amazonaws.com/role-arn': 'arn:aws:iam::1:role/files' });
    expect(find(manifests, 'Deployment', 'mariner-files')['spec'].template.spec.serviceAccountName).toBe('mariner-files');
    for (const m of manifests.filter((m) => m.kind === 'Deployment' || m.kind === 'Job')) {
      expect(m['spec'].template.metadata.labels['app.kubernetes.io/name'], m.metadata.name).toBe('mariner');
    }
  });

  it('NOTES tells the next three steps: the admin key from its Secret, a check, the first model', async () => {
    const { output } = await helmRun(['install', 'mariner', CHART, '--namespace', NAMESPACE, '--dry-run=client']);
    expect(output).toContain('get secret mariner-admin-api-key');
    expect(output).toMatch(/1\. .*\n[\s\S]*2\. .*\n[\s\S]*3\. /);
    expect(output).toContain('registers itself with the key in Secret mariner-registration');
  });
});

describe('the trial dependencies (examples/trial.yaml): one command to a platform with its database and bucket', () => {
  const TRIAL = path.join(CHART, 'examples', 'trial.yaml');

  it('a PostgreSQL with pgvector and a MinIO beside the platform, their generated credentials wired to every side', async () => {
    const manifests = await render([], [TRIAL]);
    for (const m of manifests) expect(() => validateManifest(m), `${m.kind}/${m.metadata.name}`).not.toThrow();
    const database = find(manifests, 'Secret', 'mariner-trial-postgresql')['stringData'];
    expect(database.url).toBe(`postgres://mariner:${database.password}@mariner-postgresql.${NAMESPACE}.svc:5432/mariner`);
    expect(loadConfig({ DATABASE_URL: database.url }).databaseUrl).toBe(database.url);
    expect(find(manifests, 'Service', 'mariner-postgresql')['spec'].ports[0].port).toBe(5432);
    expect(find(manifests, 'StatefulSet', 'mariner-postgresql')['spec'].template.spec.containers[0].image).toMatch(/^pgvector\/pgvector:/);
    for (const name of ['mariner-users', 'mariner-files', 'mariner-jobs']) {
      expect(envValue(manifests, name, 'DATABASE_URL')?.valueFrom, name).toEqual({ secretKeyRef: { name: 'mariner-trial-postgresql', key: 'url' } });
    }
    // The S3 settings point at MinIO, with its key pair; the weight copier gets the same pair under the AWS CLI's names.
    const config = JSON.parse(find(manifests, 'ConfigMap', 'mariner-config')['data']['config.json']);
    expect(config).toMatchObject({ MARINER_S3_ENDPOINT: `http://mariner-minio.${NAMESPACE}.svc:9000`, MARINER_S3_FORCE_PATH_STYLE: 'true' });
    expect(envValue(manifests, 'mariner-files', 'MARINER_S3_SECRET_ACCESS_KEY')?.valueFrom).toEqual({
      secretKeyRef: { name: 'mariner-trial-minio', key: 'secretAccessKey' },
    });
    const minio = find(manifests, 'Secret', 'mariner-trial-minio')['stringData'];
    expect(minio.AWS_SECRET_ACCESS_KEY).toBe(minio.secretAccessKey);
    expect(envValue(manifests, 'mariner-agent', 'MARINER_RUNTIME_S3_SECRET')?.value).toBe('mariner-trial-minio');
    // The bucket after the release is up; no migration hook (the trial database is made with the release).
    const bucket = find(manifests, 'Job', 'mariner-minio-bucket');
    expect(bucket.metadata.annotations?.['helm.sh/hook']).toBe('post-install,post-upgrade');
    expect(bucket['spec'].template.spec.containers[0].args[0]).toContain('mc mb --ignore-existing trial/mariner');
    expect(manifests.some((m) => m.metadata.name === 'mariner-migrations')).toBe(false);
    expect((await helmRun(['lint', '--strict', CHART, '--namespace', NAMESPACE, '-f', TRIAL])).ok).toBe(true);
  });

  it('off by default: none of it is rendered', async () => {
    const manifests = await render();
    expect(manifests.filter((m) => m.kind === 'StatefulSet' || m.metadata.name.includes('trial'))).toEqual([]);
  });
});

describe('ingress, images and the smaller items', () => {
  it('ingress-nginx annotations for streams and uploads by default; a separate agent Ingress takes the tunnel path off the users host', async () => {
    const manifests = await render([{ agentIngress: { enabled: true, host: 'agents.example.com' } }]);
    const users = find(manifests, 'Ingress', 'mariner');
    expect(users.metadata.annotations).toMatchObject({
      'nginx.ingress.kubernetes.io/proxy-read-timeout': '3600',
      'nginx.ingress.kubernetes.io/proxy-send-timeout': '3600',
      'nginx.ingress.kubernetes.io/proxy-body-size': '0',
      'nginx.ingress.kubernetes.io/proxy-buffering': 'off',
    });
    expect(users['spec'].rules[0].http.paths.map((p: { path: string }) => p.path)).not.toContain('/v1/sessions-worker-service');
    const agents = find(manifests, 'Ingress', 'mariner-agents');
    expect(agents['spec'].rules).toEqual([
      {
        host: 'agents.example.com',
        http: {
          paths: [{ path: '/v1/sessions-worker-service', pathType: 'Prefix', backend: { service: { name: 'mariner-sessions', port: { name: 'http' } } } }],
        },
      },
    ]);
  });

  it('an image digest pins every pod; runtime images are pinned and :latest is refused', async () => {
    const digest = `sha256:${'a'.repeat(64)}`;
    const manifests = await render([{ image: { digest } }]);
    for (const m of manifests.filter((m) => m.kind === 'Deployment' || m.kind === 'Job')) {
      expect(m['spec'].template.spec.containers[0].image, m.metadata.name).toBe(`ghcr.io/mariner-platform/mariner@${digest}`);
    }
    const env = envOf(await render(), 'mariner-agent');
    for (const e of env.filter((e) => e.name.startsWith('MARINER_RUNTIME_IMAGE_'))) expect(e.value).not.toMatch(/:latest$/);
    expect(await refusal({ worker: { runtimes: { images: { vllm: 'vllm/vllm-openai:latest' } } } })).toContain("at '/worker/runtimes/images/vllm'");
  });

  it('every pod runs the slim control-plane image by default; image.target agent-local picks the full one', async () => {
    const pods = (manifests: Manifest[]) => manifests.filter((m) => m.kind === 'Deployment' || (m.kind === 'Job' && m.metadata.name.includes('migrat')));
    const byDefault = pods(await render());
    // The control plane's Deployments, the migrations Job and the agent (its Kubernetes executor loads no llama.cpp either).
    expect(byDefault.map((m) => m.metadata.name)).toEqual(expect.arrayContaining(['mariner-gateway', 'mariner-sessions', 'mariner-agent']));
    for (const m of byDefault)
      expect(m['spec'].template.spec.containers[0].image, m.metadata.name).toBe('ghcr.io/mariner-platform/mariner:0.1.0-control-plane');
    for (const m of pods(await render([{ image: { target: 'agent-local', tag: '0.2.0' } }]))) {
      expect(m['spec'].template.spec.containers[0].image, m.metadata.name).toBe('ghcr.io/mariner-platform/mariner:0.2.0');
    }
    expect(await refusal({ image: { target: 'slim' } })).toContain("at '/image/target'");
  });

  it('the agent`s tunnel transport defaults to auto; the bucket is created when missing unless createBucket is never', async () => {
    const manifests = await render();
    expect(envValue(manifests, 'mariner-agent', 'MARINER_AGENT_TRANSPORT')?.value).toBe('auto');
    expect(envValue(await render([{ worker: { transport: 'websocket' } }]), 'mariner-agent', 'MARINER_AGENT_TRANSPORT')?.value).toBe('websocket');
    expect(await refusal({ worker: { transport: 'raw' } })).toContain("at '/worker/transport'");
    const settings = JSON.stringify(manifests.filter((m) => m.kind === 'ConfigMap' || m.kind === 'Deployment'));
    expect(settings).toContain('"MARINER_S3_CREATE_BUCKET"');
    const never = await render([{ global: { objectStore: { s3: { bucket: 'mariner', createBucket: 'never' } } } }]);
    expect(JSON.stringify(never)).toMatch(/"MARINER_S3_CREATE_BUCKET":"never"|"name":"MARINER_S3_CREATE_BUCKET","value":"never"/);
    expect(await refusal({ global: { objectStore: { s3: { bucket: 'mariner', createBucket: 'yes' } } } })).toContain(
      "at '/global/objectStore/s3/createBucket'",
    );
  });

  it('topology spread, extra volumes, a CA bundle, an overridden securityContext; a one-replica PDB lets drains through', async () => {
    const spread = [
      {
        maxSkew: 1,
        topologyKey: 'topology.kubernetes.io/zone',
        whenUnsatisfiable: 'ScheduleAnyway',
        labelSelector: { matchLabels: { 'app.kubernetes.io/component': 'gateway' } },
      },
    ];
    const manifests = await render([
      {
        controlPlane: { gateway: { topologySpreadConstraints: spread }, users: { replicas: 1 } },
        global: { caBundle: { configMapName: 'corp-ca' } },
        podSecurityContext: { runAsNonRoot: true },
        containerSecurityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true },
      },
    ]);
    for (const m of manifests) expect(() => validateManifest(m), `${m.kind}/${m.metadata.name}`).not.toThrow();
    const gateway = find(manifests, 'Deployment', 'mariner-gateway')['spec'].template.spec;
    expect(gateway.topologySpreadConstraints).toEqual(spread);
    expect(gateway.securityContext).toEqual({ runAsNonRoot: true });
    expect(gateway.volumes).toContainEqual({ name: 'ca-bundle', configMap: { name: 'corp-ca' } });
    expect(envValue(manifests, 'mariner-gateway', 'NODE_EXTRA_CA_CERTS')?.value).toBe('/etc/mariner-ca/ca.crt');
    expect(find(manifests, 'PodDisruptionBudget', 'mariner-users')['spec']).toMatchObject({ maxUnavailable: 1 });
    expect(find(manifests, 'PodDisruptionBudget', 'mariner-gateway')['spec']).toMatchObject({ minAvailable: 1 });
  });

  it('NetworkPolicy and ServiceMonitor are optional and off by default', async () => {
    const off = await render();
    expect(off.some((m) => m.kind === 'NetworkPolicy' || m.kind === 'ServiceMonitor')).toBe(false);
    const on = await render([{ networkPolicy: { enabled: true }, serviceMonitor: { enabled: true } }]);
    // (agent/kubernetes' validator has no NetworkPolicy schema: its shape is checked here.)
    const policy = find(on, 'NetworkPolicy', 'mariner-control-plane');
    expect(policy['spec'].policyTypes).toEqual(['Ingress']);
    expect(policy['spec'].ingress.map((rule: { ports?: { port: string }[] }) => rule.ports?.[0]?.port)).toEqual([undefined, 'http', 'ops']);
    expect(find(on, 'ServiceMonitor', 'mariner')['spec'].endpoints).toEqual([{ port: 'ops', path: '/metrics', interval: '30s' }]);
  });
});
