import { KubeConfig, RbacAuthorizationV1Api, type V1RoleBinding } from '@kubernetes/client-node';
import type { Logger } from '../../lib/logging.js';
import { ignoreNotFound, orNotFound } from './apiErrors.js';

/** The RoleBinding the agent keeps in each namespace assigned to a project (and only there). */
export const PROJECT_ROLE_BINDING = 'mariner-agent-project';
/** What marks a RoleBinding as the agent's own: it never touches one without it. */
export const MANAGED_BY = { key: 'app.kubernetes.io/managed-by', value: 'mariner-agent' } as const;
/** Kubernetes' own namespaces: never a project's (subgraphs/users/validation.ts refuses them too). */
const SYSTEM_NAMESPACES = ['kube-system', 'kube-public', 'kube-node-lease'];

export interface ProjectRoleBindingOptions {
  kubeConfig: KubeConfig;
  /** The chart's ClusterRole of project work (charts/mariner worker.yaml): the only role the agent may bind. */
  clusterRole: string;
  /** The agent's own ServiceAccount, the binding's one subject. */
  serviceAccount: { name: string; namespace: string };
  /**
   * Namespaces that never get a binding, whatever the control plane says (MARINER_RESERVED_NAMESPACES):
   * the release's and the runtimes', where the agent holds rights users must not borrow through /v1/sessions.
   */
  reservedNamespaces: string[];
  logger: Logger;
}

export interface ProjectRoleBindingResult {
  created: string[];
  removed: string[];
  /** Assigned namespaces that are reserved: refused, never bound. */
  refused: string[];
}

/**
 * The agent's rights follow the projects' assignments (issue 23): each namespace assigned to this cluster
 * gets a RoleBinding of the project ClusterRole to the agent's ServiceAccount, and the bindings the agent
 * made in namespaces no longer assigned are deleted. Bindings it did not make (no managed-by label) are
 * never read for deletion, changed or removed; a reserved namespace is never bound.
 */
export function createProjectRoleBindings(options: ProjectRoleBindingOptions) {
  const rbac = options.kubeConfig.makeApiClient(RbacAuthorizationV1Api);
  const reserved = new Set([...SYSTEM_NAMESPACES, ...options.reservedNamespaces, options.serviceAccount.namespace]);

  function binding(namespace: string): V1RoleBinding {
    return {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: PROJECT_ROLE_BINDING, namespace, labels: { [MANAGED_BY.key]: MANAGED_BY.value } },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: options.clusterRole },
      subjects: [{ kind: 'ServiceAccount', name: options.serviceAccount.name, namespace: options.serviceAccount.namespace }],
    };
  }

  /** Makes the bindings those of `assigned` (the namespaces this cluster's projects are assigned). */
  async function reconcile(assigned: Iterable<string>): Promise<ProjectRoleBindingResult> {
    const wanted = new Set<string>();
    const refused: string[] = [];
    for (const namespace of new Set(assigned)) {
      if (reserved.has(namespace)) refused.push(namespace);
      else wanted.add(namespace);
    }
    if (refused.length > 0) options.logger.warn({ namespaces: refused }, 'reserved namespaces are assigned to a project: the agent binds no rights there');

    const ours = await rbac.listRoleBindingForAllNamespaces({ labelSelector: `${MANAGED_BY.key}=${MANAGED_BY.value}` });
    const bound = new Set(ours.items.filter((b) => b.metadata?.name === PROJECT_ROLE_BINDING).map((b) => b.metadata!.namespace!));
    const created: string[] = [];
    const removed: string[] = [];
    for (const namespace of [...wanted].sort()) {
      if (bound.has(namespace)) continue;
      const existing = await orNotFound(rbac.readNamespacedRoleBinding({ name: PROJECT_ROLE_BINDING, namespace }));
      if (existing) {
        // Someone else's binding of that name: left alone (the operator may have bound the role by hand).
        options.logger.warn({ namespace }, `a RoleBinding ${PROJECT_ROLE_BINDING} the agent did not make is there: left as it is`);
        continue;
      }
      try {
        await rbac.createNamespacedRoleBinding({ namespace, body: binding(namespace) });
        created.push(namespace);
      } catch (error) {
        // A namespace not created yet (404) is bound on a later pass; others are logged and retried too.
        options.logger.warn({ namespace, err: (error as Error).message }, 'could not bind the project role in a namespace');
      }
    }
    for (const namespace of [...bound].sort()) {
      if (wanted.has(namespace)) continue;
      await rbac.deleteNamespacedRoleBinding({ name: PROJECT_ROLE_BINDING, namespace }).catch(ignoreNotFound);
      removed.push(namespace);
    }
    if (created.length > 0 || removed.length > 0) options.logger.info({ created, removed }, 'project role bindings follow the assignments');
    return { created, removed, refused };
  }

  return { reconcile };
}

export type ProjectRoleBindings = ReturnType<typeof createProjectRoleBindings>;
