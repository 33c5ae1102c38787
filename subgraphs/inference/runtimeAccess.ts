import { servesOrganization, type ClusterAccessDirectory } from '../../lib/clusterAccess.js';
import type { ProjectScope, Worker } from '../../lib/identity.js';
import type { ModelOwner, ModelsClient } from './modelsClient.js';
import type { RuntimeReport, RuntimeRow } from './store.js';

/** Whether a project sees the model: the tenant's shared catalog and its own models (the models subgraph's visibility). */
export function visibleToProject(owner: ModelOwner, projectId: string): boolean {
  return owner.projectId === null ? owner.isBaseModel : owner.projectId === projectId;
}

/**
 * Whether a cluster may run the model: the tenant's shared catalog on any of the tenant's clusters (an
 * organization's cluster serves it to that organization's requests only, which routing sees to), an
 * organization's own model only on a cluster that serves the organization.
 */
export function runnableOn(owner: ModelOwner, cluster: Worker): boolean {
  if (owner.organizationId === null) return owner.isBaseModel;
  return servesOrganization(cluster, owner.organizationId);
}

/**
 * Which runtimes a caller may see and which a cluster may report (README "Security model"): clusters
 * are owned by organizations (lib/clusterAccess.ts), so a runtime shows only to the projects of
 * organizations its cluster serves, and only when the project sees its model; an agent's report counts
 * only for models its cluster may run. Models are the models subgraph's: their owners are asked there
 * as the system (`modelOwners`), once per view or report.
 */
export class RuntimeAccess {
  constructor(
    private readonly clusters: ClusterAccessDirectory,
    private readonly models: ModelsClient,
  ) {}

  /** The clusters the project's organization may use, among them those named in `knowing` if they exist. */
  usableClusters(scope: ProjectScope, knowing: Iterable<string>): Promise<ReadonlySet<string>> {
    return this.clusters.usableBy(scope.tenantId, scope.organizationId, knowing);
  }

  /** The runtimes on clusters the project's organization may use. */
  async onUsableClusters(scope: ProjectScope, rows: RuntimeRow[]): Promise<RuntimeRow[]> {
    if (rows.length === 0) return rows;
    const usable = await this.clusters.usableBy(
      scope.tenantId,
      scope.organizationId,
      rows.map((row) => row.cluster_id),
    );
    return rows.filter((row) => usable.has(row.cluster_id));
  }

  /** The runtimes the project may see: on clusters its organization may use, of models it sees. */
  async visible(scope: ProjectScope, requestId: string, rows: RuntimeRow[]): Promise<RuntimeRow[]> {
    const usable = await this.onUsableClusters(scope, rows);
    if (usable.length === 0) return usable;
    const owners = await this.models.owners(
      requestId,
      scope.tenantId,
      usable.map((row) => row.model_id),
    );
    return usable.filter((row) => {
      const owner = owners.get(row.model_id);
      return owner !== undefined && visibleToProject(owner, scope.projectId);
    });
  }

  /**
   * The reports of models the cluster may run (see `runnableOn`) and how many others were left out:
   * unknown models (one just deleted) and other organizations' models. The rest of the report stands,
   * so an agent a step behind the catalog keeps serving what it may.
   */
  async admissible(worker: Worker, requestId: string, reports: RuntimeReport[]): Promise<{ accepted: RuntimeReport[]; dropped: number }> {
    if (reports.length === 0) return { accepted: reports, dropped: 0 };
    const owners = await this.models.owners(
      requestId,
      worker.tenantId,
      reports.map((report) => report.model_id),
    );
    const accepted = reports.filter((report) => {
      const owner = owners.get(report.model_id);
      return owner !== undefined && runnableOn(owner, worker);
    });
    return { accepted, dropped: reports.length - accepted.length };
  }
}
