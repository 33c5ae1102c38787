import type { AnyComponent } from '../lib/component.js';
import { SUBGRAPH_NAMES } from '../schema/subgraphs.js';
import { clustersComponent } from '../subgraphs/clusters/index.js';
import { filesComponent } from '../subgraphs/files/index.js';
import { inferenceComponent } from '../subgraphs/inference/index.js';
import { jobsComponent } from '../subgraphs/jobs/index.js';
import { modelsComponent } from '../subgraphs/models/index.js';
import { rbacComponent } from '../subgraphs/rbac/index.js';
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
] as const satisfies readonly AnyComponent[];

export type ComponentName = (typeof COMPONENTS)[number]['name'];

/**
 * Components that `mariner serve` runs in the process of another (one Deployment in the chart): inference
 * and jobs reach agents through the tunnels, which end in the sessions process. With a transport that
 * reaches another process's tunnels (issue 21, item 2), these lines go and each runs on its own.
 */
export const SERVED_IN = {
  inference: 'sessions',
  jobs: 'sessions',
} as const satisfies Partial<Record<ComponentName, ComponentName>>;

/** What `mariner serve <component>` accepts: the components not served in another's process. */
export type ServedName = Exclude<ComponentName, keyof typeof SERVED_IN>;

/** The `mariner serve` process (and chart Deployment) a component runs in. */
export function processOf(name: ComponentName): ServedName {
  return ((SERVED_IN as Partial<Record<ComponentName, ServedName>>)[name] ?? name) as ServedName;
}

/** The processes of `mariner serve`, in registry order, each with the components it runs (itself first). */
export const SERVED: ReadonlyMap<ServedName, readonly AnyComponent[]> = new Map(
  COMPONENTS.filter((c) => processOf(c.name) === c.name).map((c) => [c.name as ServedName, COMPONENTS.filter((other) => processOf(other.name) === c.name)]),
);

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
      (other) => other !== c && ((c.needs.subgraphs ?? []).some((name: string) => other.subgraphs.includes(name)) || (c.needs.tunnels && other.provides?.includes('tunnels'))),
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
 * (sessions 8081, inference 8082, jobs 8083); MARINER_PORT 0: any free port for each.
 */
export function servedPorts(components: readonly AnyComponent[], port: number): { public: number | undefined; subgraphs: Record<string, number> } {
  const hasPublic = components.some((c) => c.public);
  const subgraphs: Record<string, number> = {};
  components.flatMap((c) => c.subgraphs).forEach((name, i) => (subgraphs[name] = port === 0 ? 0 : port + (hasPublic ? 1 : 0) + i));
  return { public: hasPublic ? port : undefined, subgraphs };
}

/**
 * Checked once, at import: subgraph names are the supergraph's, each served by one component; a
 * component needing the tunnels runs in the process of the one providing them; the cluster-access
 * directory asks the clusters subgraph, so a component needing it names that subgraph.
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
for (const [process, components] of SERVED) {
  for (const component of components) {
    if (component.needs.tunnels && !components.some((c) => c.provides?.includes('tunnels'))) {
      throw new Error(`${component.name} needs the agents' tunnels, which no component of the ${process} process provides`);
    }
    if (component.needs.clusterAccess && !component.needs.subgraphs?.includes('clusters')) throw new Error(`${component.name} needs the cluster-access directory: name the clusters subgraph among its needs`);
  }
}
