import type { AnyComponent } from '../lib/component.js';
import { SUBGRAPH_NAMES } from '../schema/subgraphs.js';
import { auditComponent } from '../subgraphs/audit/index.js';
import { batchesComponent } from '../subgraphs/batches/index.js';
import { clustersComponent } from '../subgraphs/clusters/index.js';
import { filesComponent } from '../subgraphs/files/index.js';
import { inferenceComponent } from '../subgraphs/inference/index.js';
import { jobsComponent } from '../subgraphs/jobs/index.js';
import { modelsComponent } from '../subgraphs/models/index.js';
import { rbacComponent } from '../subgraphs/rbac/index.js';
import { responsesComponent } from '../subgraphs/responses/index.js';
import { sessionsComponent } from '../subgraphs/sessions/index.js';
import { usersComponent } from '../subgraphs/users/index.js';
import { vectorStoresComponent } from '../subgraphs/vectorstores/index.js';
import { gatewayComponent } from './gatewayComponent.js';

/**
 * The component registry (DESIGN §2): the one list `mariner up` and `mariner serve` assemble the platform
 * from, and the chart's component list is checked against (test/helmChart.test.ts). Adding a manager is
 * its folder, whose index.ts exports its definition (lib/component.ts), and one line here.
 *
 * The order is the listing order (`mariner serve` names, the chart); `mariner up` starts each component
 * once the subgraphs and tunnels it needs are up (startOrder).
 */
export const COMPONENTS = [
  gatewayComponent,
  usersComponent,
  rbacComponent,
  filesComponent,
  modelsComponent,
  clustersComponent,
  sessionsComponent,
  inferenceComponent,
  jobsComponent,
  vectorStoresComponent,
  responsesComponent,
  batchesComponent,
  auditComponent,
] as const satisfies readonly AnyComponent[];

export type ComponentName = (typeof COMPONENTS)[number]['name'];

/** What `mariner serve` accepts: every component of the registry, each in its own process. */
export type ServedName = ComponentName;

/**
 * The processes of `mariner serve`, in registry order, each with the components it runs: one each.
 * Inference and jobs reach the agents' tunnels, which end in the sessions process, through its peer
 * endpoint (subgraphs/sessions/remoteTunnels.ts).
 */
export const SERVED: ReadonlyMap<ServedName, readonly AnyComponent[]> = new Map(COMPONENTS.map((c) => [c.name, [c]]));

/**
 * Whether a process's components reach the agents' tunnels in another process: one needs them and none
 * of the process provides them. The host then follows the sessions replicas' tunnel directory (the
 * database, pub/sub) and sends each request to the peer endpoint of the replica holding the cluster.
 */
export function reachesRemoteTunnels(components: readonly AnyComponent[]): boolean {
  return components.some((c) => c.needs.tunnels) && !components.some((c) => c.provides?.includes('tunnels'));
}

/**
 * The order to start components in one process: registry order, except that a component waits for the
 * components serving the subgraphs it requires and for the one providing the tunnels it needs. (What a
 * component only needs later — optional subgraphs, the gateway's URL — sets no order.)
 */
export function startOrder(components: readonly AnyComponent[]): AnyComponent[] {
  const order: AnyComponent[] = [];
  const pending = [...components];
  const waitsFor = (c: AnyComponent): AnyComponent[] =>
    components.filter(
      (other) =>
        other !== c &&
        ((c.needs.subgraphs ?? []).some((name: string) => other.subgraphs.includes(name)) || (c.needs.tunnels && other.provides?.includes('tunnels'))),
    );
  while (pending.length > 0) {
    const next = pending.find((c) => waitsFor(c).every((other) => order.includes(other)));
    if (!next) throw new Error(`components wait for each other: ${pending.map((c) => c.name).join(', ')}`);
    order.push(next);
    pending.splice(pending.indexOf(next), 1);
  }
  return order;
}

/**
 * The ports of one `mariner serve` process, from MARINER_PORT: the public port there when one of its
 * components has public routes (gateway, sessions), its subgraphs on the following ports in order
 * (sessions: its subgraph on 8081); MARINER_PORT 0: any free port for each.
 */
export function servedPorts(components: readonly AnyComponent[], port: number): { public: number | undefined; subgraphs: Record<string, number> } {
  const hasPublic = components.some((c) => c.public);
  const subgraphs: Record<string, number> = {};
  components.flatMap((c) => c.subgraphs).forEach((name, i) => (subgraphs[name] = port === 0 ? 0 : port + (hasPublic ? 1 : 0) + i));
  return { public: hasPublic ? port : undefined, subgraphs };
}

/**
 * Checked once, at import: subgraph names are the supergraph's, each served by one component; one
 * component provides the tunnels (the others reach them in its process or through its peer endpoint);
 * the cluster-access directory asks the clusters subgraph, so a component needing it names that subgraph.
 */
for (const component of COMPONENTS as readonly AnyComponent[]) {
  const named = [...component.subgraphs, ...(component.needs.subgraphs ?? []), ...(component.needs.optionalSubgraphs ?? [])];
  const unknown = named.filter((name) => !(SUBGRAPH_NAMES as readonly string[]).includes(name));
  if (unknown.length > 0) throw new Error(`${component.name} names subgraphs the supergraph lacks: ${unknown.join(', ')}`);
}
for (const name of SUBGRAPH_NAMES) {
  const serving = COMPONENTS.filter((c) => c.subgraphs.includes(name));
  if (serving.length !== 1) throw new Error(`the ${name} subgraph must be served by one component, not ${serving.length}`);
}
if (COMPONENTS.filter((c) => (c as AnyComponent).provides?.includes('tunnels')).length !== 1) throw new Error("one component must provide the agents' tunnels");
for (const component of COMPONENTS as readonly AnyComponent[]) {
  if (component.needs.clusterAccess && !component.needs.subgraphs?.includes('clusters'))
    throw new Error(`${component.name} needs the cluster-access directory: name the clusters subgraph among its needs`);
}
