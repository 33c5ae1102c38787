import { CoreV1Api, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../lib/logging.js';
import { kubeConfigFor, startKubeApiServer, type KubeApiServer } from '../../test/support/kubeApiServer.js';
import { createProjectRoleBindings, MANAGED_BY, PROJECT_ROLE_BINDING, type ProjectRoleBindings } from './projectRoleBindings.js';

const AGENT = { name: 'mariner-agent', namespace: 'mariner' };
const CLUSTER_ROLE = 'mariner-agent-project-mariner';

describe('project role bindings (the agent rights follow the projects assignments)', () => {
  let kube: KubeApiServer;
  let bindings: ProjectRoleBindings;
  let rbac: RbacAuthorizationV1Api;

  beforeAll(async () => {
    kube = await startKubeApiServer();
    const kubeConfig = kubeConfigFor(kube);
    const core = kubeConfig.makeApiClient(CoreV1Api);
    for (const name of ['mariner', 'mariner-runtimes', 'team-a', 'team-b', 'hand-made']) await core.createNamespace({ body: { metadata: { name } } });
    rbac = kubeConfig.makeApiClient(RbacAuthorizationV1Api);
    bindings = createProjectRoleBindings({
      kubeConfig,
      clusterRole: CLUSTER_ROLE,
      serviceAccount: AGENT,
      reservedNamespaces: ['mariner', 'mariner-runtimes'],
      logger: silentLogger(),
    });
  });
  afterAll(() => kube?.close());

  const boundNamespaces = () => kube.objects('RoleBinding').map((b) => b.metadata.namespace as string);

  it('binds the project ClusterRole to the agent in a namespace once it is assigned', async () => {
    const result = await bindings.reconcile(['team-a']);
    expect(result).toEqual({ created: ['team-a'], removed: [], refused: [] });
    const [binding] = kube.objects('RoleBinding', 'team-a');
    expect(binding.metadata.name).toBe(PROJECT_ROLE_BINDING);
    expect(binding.metadata.labels[MANAGED_BY.key]).toBe(MANAGED_BY.value);
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: CLUSTER_ROLE });
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', ...AGENT }]);
    // A second pass with the same assignments changes nothing.
    expect(await bindings.reconcile(['team-a'])).toEqual({ created: [], removed: [], refused: [] });
  });

  it('removes the binding when the namespace is released, and binds a newly assigned one', async () => {
    expect(await bindings.reconcile(['team-b'])).toEqual({ created: ['team-b'], removed: ['team-a'], refused: [] });
    expect(boundNamespaces()).toEqual(['team-b']);
  });

  it('never binds in a reserved namespace (the release, the runtimes, Kubernetes own), even when assigned', async () => {
    const result = await bindings.reconcile(['team-b', 'mariner', 'mariner-runtimes', 'kube-system']);
    expect(result.refused.sort()).toEqual(['kube-system', 'mariner', 'mariner-runtimes']);
    expect(result.created).toEqual([]);
    expect(boundNamespaces()).toEqual(['team-b']);
    expect(kube.requests.some((r) => r.method === 'POST' && /namespaces\/(mariner|mariner-runtimes|kube-system)\/rolebindings/.test(r.path))).toBe(false);
  });

  it('never touches a RoleBinding it did not make, of any name', async () => {
    const handMade = (namespace: string, name: string) => ({
      metadata: { name, namespace },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'edit' },
      subjects: [{ kind: 'User', name: 'alice', apiGroup: 'rbac.authorization.k8s.io' }],
    });
    await rbac.createNamespacedRoleBinding({ namespace: 'hand-made', body: handMade('hand-made', PROJECT_ROLE_BINDING) });
    await rbac.createNamespacedRoleBinding({ namespace: 'team-b', body: handMade('team-b', 'alice-edit') });
    // hand-made is assigned: its binding of the agent's name is someone else's, left as it is.
    expect(await bindings.reconcile(['team-b', 'hand-made'])).toEqual({ created: [], removed: [], refused: [] });
    // Everything released: only the agent's own binding goes.
    expect(await bindings.reconcile([])).toEqual({ created: [], removed: ['team-b'], refused: [] });
    const left = kube.objects('RoleBinding').map((b) => `${b.metadata.namespace}/${b.metadata.name}/${b.roleRef.name}`);
    expect(left.sort()).toEqual([`hand-made/${PROJECT_ROLE_BINDING}/edit`, 'team-b/alice-edit/edit']);
  });

  it('binds a namespace that does not exist yet on a later pass, once it is created', async () => {
    expect(await bindings.reconcile(['later'])).toEqual({ created: [], removed: [], refused: [] });
    await kubeConfigFor(kube)
      .makeApiClient(CoreV1Api)
      .createNamespace({ body: { metadata: { name: 'later' } } });
    expect(await bindings.reconcile(['later'])).toEqual({ created: ['later'], removed: [], refused: [] });
  });
});
