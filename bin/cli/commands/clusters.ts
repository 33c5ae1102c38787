import { mkdirSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import YAML from 'yaml';
import type { ApiClient } from '../client.js';
import { CliError, UsageError } from '../errors.js';
import { printData, printList } from '../output.js';
import { run } from '../command.js';
import { listAll } from '../pages.js';

/** The virtual cluster's name in /v1/sessions (subgraphs/sessions/federationRoutes.ts; the CLI imports nothing of the platform). */
const FEDERATED_CLUSTER = 'federated';

const CLUSTER_FIELDS = `id name isDefault organizationId sharedWithAllOrganizations createdAt connected
  tunnels { agentId transport connectedAt heartbeatRttMs }
  status { gpuCapacity gpuAllocated stale updatedAt nodes { name ready } }
  componentStatuses { name isHealthy message }`;

interface ClusterView {
  id: string;
  name: string;
  isDefault: boolean;
  organizationId: string | null;
  sharedWithAllOrganizations: boolean;
  createdAt: string;
  connected: boolean;
  tunnels: { agentId: string; transport: string; connectedAt: string; heartbeatRttMs: number }[];
  status: { gpuCapacity: number; gpuAllocated: number; stale: boolean; updatedAt: string; nodes: { name: string; ready: boolean }[] } | null;
  componentStatuses: { name: string; isHealthy: boolean; message: string }[];
}

async function listClusters(client: ApiClient): Promise<ClusterView[]> {
  return listAll<ClusterView>(client, 'clusters', CLUSTER_FIELDS);
}

/** A cluster by id or name. */
async function findCluster(client: ApiClient, idOrName: string): Promise<ClusterView> {
  const all = await listClusters(client);
  const found = all.find((c) => c.id === idOrName) ?? all.find((c) => c.name === idOrName);
  if (!found) throw new CliError(`cluster ${idOrName} not found (NOT_FOUND)`, 'NOT_FOUND');
  return found;
}

/** The kubeconfig file kubectl reads: --kubeconfig, else the first of $KUBECONFIG, else ~/.kube/config. */
function kubeconfigPath(given: string | undefined): string {
  if (given) return given;
  const env = process.env['KUBECONFIG']?.split(path.delimiter).find(Boolean);
  return env ?? path.join(process.env['HOME'] || homedir(), '.kube', 'config');
}

interface Named<T> {
  name: string;
  [key: string]: unknown;
  value?: T;
}

function upsert(list: unknown, name: string, entry: Record<string, unknown>): Record<string, unknown>[] {
  const items = (Array.isArray(list) ? list : []) as Named<unknown>[];
  return [...items.filter((i) => i?.name !== name), { name, ...entry }];
}

export function registerClusters(program: Command): void {
  const clusters = program
    .command('clusters')
    .description('worker clusters: register (the registration key is shown once), list with status and tunnels, unregister')
    .addHelpText(
      'after',
      `
Examples:
  mariner clusters register gpu-east             # then run the agent there with the key it prints
  mariner clusters list
  mariner kubeconfig gpu-east && kubectl --context mariner-gpu-east get pods`,
    );

  clusters
    .command('list')
    .description('the clusters you may see, with their agents and GPUs')
    .action(
      run(async (inv) => {
        printList(inv.format, await listClusters(inv.client()), [
          { header: 'ID', value: (c) => c.id },
          { header: 'NAME', value: (c) => c.name },
          { header: 'OWNER', value: (c) => c.organizationId ?? 'platform' },
          { header: 'AGENTS', value: (c) => (c.connected ? `${c.tunnels.length} connected` : 'none connected') },
          { header: 'GPUS', value: (c) => (c.status ? `${c.status.gpuAllocated}/${c.status.gpuCapacity}${c.status.stale ? ' (stale)' : ''}` : '-') },
          { header: 'NODES', value: (c) => (c.status ? `${c.status.nodes.filter((n) => n.ready).length}/${c.status.nodes.length} ready` : '-') },
          { header: 'CREATED', value: (c) => c.createdAt },
        ]);
      }),
    );

  clusters
    .command('register')
    .argument('<name>', 'a DNS label: lowercase letters, digits and -')
    .description('register a cluster; its registration key (for the agent) is printed this once')
    .option('--organization <id>', 'the organization that owns it (default: yours; platform admins: omit for a platform cluster)')
    .action(
      run(async (inv, name: string) => {
        const input = { name, ...(inv.options['organization'] ? { organizationId: inv.options['organization'] } : {}) };
        const { registerCluster } = await inv
          .client()
          .graphql<{ registerCluster: { cluster: { id: string; name: string; organizationId: string | null }; registrationKey: string } }>(
            `mutation ($input: RegisterClusterInput!) { registerCluster(input: $input) { cluster { id name organizationId } registrationKey } }`,
            { input },
          );
        const { cluster, registrationKey } = registerCluster;
        if (inv.format !== 'table') return printData(inv.format, { ...cluster, registrationKey });
        process.stdout.write(
          `Registered cluster ${cluster.name} (${cluster.id}).\nRegistration key (shown once, store it now):\n  ${registrationKey}\n` +
            `Run its agent with: MARINER_REGISTRATION_KEY=... mariner agent --control-plane ${inv.client().context.url}\n`,
        );
      }),
    );

  clusters
    .command('unregister')
    .argument('<cluster>', 'the cluster id or name')
    .description('unregister a cluster: its registration key stops working at once')
    .action(
      run(async (inv, idOrName: string) => {
        const client = inv.client();
        const cluster = await findCluster(client, idOrName);
        const { unregisterCluster } = await client.graphql<{ unregisterCluster: { id: string; deleted: boolean } }>(
          `mutation ($id: ID!) { unregisterCluster(id: $id) { id deleted } }`,
          { id: cluster.id },
        );
        if (inv.format === 'table') process.stdout.write(`Cluster ${cluster.name} (${unregisterCluster.id}) unregistered\n`);
        else printData(inv.format, unregisterCluster);
      }),
    );

  program
    .command('kubeconfig')
    .argument('<cluster>', "the cluster id or name, or `federated` (the virtual cluster that places Jobs on your project's clusters)")
    .description("point kubectl at a cluster through the platform (/v1/sessions/<cluster>), with this context's key as the bearer token")
    .option('--kubeconfig <path>', 'the file to write (default: the first of $KUBECONFIG, else ~/.kube/config)')
    .option('--name <name>', 'the kubectl context name (default: mariner-<cluster name>)')
    .option('--namespace <namespace>', "the context's default namespace (your project's namespace there)")
    .option('--certificate-authority <file>', "a PEM file of the CA that signed the platform's TLS certificate (embedded in the entry)")
    .option('--no-use', 'do not make it the current kubectl context')
    .action(
      run(async (inv, idOrName: string) => {
        const client = inv.client();
        let cluster: Pick<ClusterView, 'id' | 'name'>;
        try {
          // `federated`: the platform's virtual cluster, which places each Job on a cluster of the project
          // (/v1/sessions/federated, docs/placement.md); it is no registered cluster to look up.
          cluster = idOrName === FEDERATED_CLUSTER ? { id: FEDERATED_CLUSTER, name: FEDERATED_CLUSTER } : await findCluster(client, idOrName);
        } catch (error) {
          // A project member may reach its namespaces through /v1/sessions without reading the clusters
          // (api.clusters.read): given the cluster's id, the entry needs nothing more.
          if (!(error instanceof CliError && error.code === 'FORBIDDEN' && /^cluster-/.test(idOrName))) throw error;
          cluster = { id: idOrName, name: idOrName };
        }
        const name: string = inv.options['name'] ?? `mariner-${cluster.name}`;
        const file = kubeconfigPath(inv.options['kubeconfig']);
        let config: Record<string, unknown> = { apiVersion: 'v1', kind: 'Config', preferences: {} };
        try {
          config = (YAML.parse(readFileSync(file, 'utf8')) as Record<string, unknown>) ?? config;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new CliError(`cannot read ${file}: ${(error as Error).message}`);
        }
        const server = `${client.context.url}/v1/sessions/${encodeURIComponent(cluster.id)}`;
        const caFile: string | undefined = inv.options['certificateAuthority'];
        let caData: string | undefined;
        if (caFile) {
          try {
            caData = readFileSync(caFile).toString('base64');
          } catch (error) {
            throw new UsageError(`--certificate-authority: cannot read ${caFile}: ${(error as Error).message}`);
          }
        }
        config['clusters'] = upsert(config['clusters'], name, { cluster: { server, ...(caData ? { 'certificate-authority-data': caData } : {}) } });
        config['users'] = upsert(config['users'], name, { user: { token: client.context.apiKey } });
        config['contexts'] = upsert(config['contexts'], name, {
          context: { cluster: name, user: name, ...(inv.options['namespace'] ? { namespace: inv.options['namespace'] } : {}) },
        });
        if (inv.options['use'] !== false) config['current-context'] = name;
        mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
        writeFileSync(file, YAML.stringify(config), { mode: 0o600 });
        chmodSync(file, 0o600);
        // client-go sends no bearer token to an http:// server (kubectl then answers "You must be logged in").
        if (server.startsWith('http:')) {
          process.stderr.write(
            `mariner: warning: ${client.context.url} is plain http, and kubectl sends no credentials over http: reach the platform through https (its ingress) for kubectl\n`,
          );
        }
        if (inv.format === 'table') {
          process.stdout.write(`kubectl context "${name}" written to ${file}: ${server}${inv.options['use'] !== false ? ' (now current)' : ''}\n`);
        } else printData(inv.format, { context: name, server, kubeconfig: file, cluster: { id: cluster.id, name: cluster.name } });
      }),
    );
}
