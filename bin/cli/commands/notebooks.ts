import type { Command } from 'commander';
import type { ApiClient } from '../client.js';
import { CliError, UsageError } from '../errors.js';
import { printData, printList, printObject } from '../output.js';
import { integerOption, run } from '../command.js';
import { listAll } from '../pages.js';
import { openBrowser } from '../oidc.js';

/**
 * `mariner notebooks`: the project's Jupyter notebooks (docs/batch-jobs-and-notebooks.md), on GraphQL;
 * `open` signs the browser in through the platform's notebook route (/v1/sessions/.../notebooks/...) with a
 * one-time sign-in ticket (`POST /v1/sessions/login_tickets`), never with the context's credential itself.
 */

/** What `POST /v1/sessions/login_tickets` answers (subgraphs/sessions/loginTicketRoute.ts). */
interface LoginTicket {
  ticket: string;
  url: string;
  expires_at: number;
}

const NOTEBOOK_FIELDS = `id name createdAt startedAt stoppedAt image status pendingAction error { code message }
  resources { cpuMillicores { requests limits } memoryMegabytes { requests limits } storageMegabytes { requests limits } gpuCount }
  envs { name value } additionalExposedPorts clusterId kubernetesNamespace attempts`;

interface NotebookView {
  id: string;
  name: string;
  createdAt: string;
  startedAt: string | null;
  stoppedAt: string | null;
  image: string;
  status: string;
  pendingAction: string | null;
  error: { code: string; message: string } | null;
  resources: {
    cpuMillicores: { requests: number | null; limits: number | null };
    memoryMegabytes: { requests: number | null; limits: number | null };
    storageMegabytes: { requests: number | null; limits: number | null };
    gpuCount: number;
  };
  envs: { name: string; value: string }[];
  additionalExposedPorts: number[];
  clusterId: string | null;
  kubernetesNamespace: string | null;
  attempts: number;
}

const status = (n: NotebookView) =>
  n.status.toLowerCase() + (n.pendingAction ? ` (${n.pendingAction.toLowerCase()})` : '') + (n.error ? `: ${n.error.message}` : '');

const COLUMNS = [
  { header: 'ID', value: (n: NotebookView) => n.id },
  { header: 'NAME', value: (n: NotebookView) => n.name },
  { header: 'STATUS', value: status },
  { header: 'IMAGE', value: (n: NotebookView) => n.image },
  { header: 'GPUS', value: (n: NotebookView) => n.resources.gpuCount },
  { header: 'CLUSTER', value: (n: NotebookView) => n.clusterId },
  { header: 'CREATED', value: (n: NotebookView) => n.createdAt },
];

async function listNotebooks(client: ApiClient): Promise<NotebookView[]> {
  return listAll<NotebookView>(client, 'notebooks', NOTEBOOK_FIELDS);
}

/** A notebook by id (nb-...) or by name. */
async function findNotebook(client: ApiClient, idOrName: string): Promise<NotebookView & { token: string }> {
  let id = idOrName;
  if (!/^nb-[A-Za-z0-9]+$/.test(idOrName)) {
    const found = (await listNotebooks(client)).find((n) => n.name === idOrName);
    if (!found) throw new CliError(`notebook ${idOrName} not found (NOT_FOUND)`, 'NOT_FOUND');
    id = found.id;
  }
  const { notebook } = await client.graphql<{ notebook: (NotebookView & { token: string }) | null }>(
    `query ($id: ID!) { notebook(id: $id) { ${NOTEBOOK_FIELDS} token } }`,
    { id },
  );
  if (!notebook) throw new CliError(`notebook ${idOrName} not found (NOT_FOUND)`, 'NOT_FOUND');
  return notebook;
}

/** The notebook's page through the platform (LLMariner's session route), by id (unambiguous in a shared namespace). */
export function notebookUrl(base: string, notebook: { id: string; clusterId: string; kubernetesNamespace: string }, port?: number): string {
  const segments = ['v1/sessions', notebook.clusterId, 'v1/services/notebooks', notebook.id, notebook.kubernetesNamespace].map((s, i) =>
    i % 2 === 0 ? s : encodeURIComponent(s),
  );
  return `${base}/${segments.join('/')}/${port ? `${port}/` : 'lab'}`;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function registerNotebooks(program: Command): void {
  const notebooks = program
    .command('notebooks')
    .description("the project's Jupyter notebooks: create, list, get, open in a browser, stop, start, delete")
    .addHelpText(
      'after',
      `
Notebooks run on Kubernetes clusters (the local executor of \`mariner up\` does not run Jupyter).

Examples:
  mariner notebooks create analysis --image jupyter-lab-base --gpus 1
  mariner notebooks open analysis                  # the browser signs in as this context, with a one-time link
  mariner notebooks stop analysis && mariner notebooks start analysis`,
    );

  notebooks
    .command('create')
    .argument('<name>', '1 to 40 lowercase letters, digits or dashes (it names the Kubernetes objects)')
    .description('create a notebook: scheduled on a cluster of the project, with a Jupyter token and an API key for the OpenAI API inside it')
    .option('--image <image>', 'a preset (jupyter-lab-base, jupyter-lab-full) or an image reference', 'jupyter-lab-base')
    .option('--gpus <n>', 'GPUs', integerOption('--gpus', 0, 1024))
    .option('--cpu <millicores>', 'CPU requested, in millicores', integerOption('--cpu', 1, 1_000_000))
    .option('--memory <megabytes>', 'memory requested, in megabytes', integerOption('--memory', 1, 10_000_000))
    .option('--storage <megabytes>', 'disk, in megabytes', integerOption('--storage', 1, 100_000_000))
    .option('--env <NAME=value>', 'an environment variable (repeatable)', collect, [])
    .option('--port <port>', 'another port to expose besides Jupyter (repeatable)', collect, [])
    .action(
      run(async (inv, name: string) => {
        const o = inv.options;
        const envs = (o['env'] as string[]).map((pair) => {
          const at = pair.indexOf('=');
          if (at <= 0) throw new UsageError(`--env takes NAME=value, not "${pair}"`);
          return { name: pair.slice(0, at), value: pair.slice(at + 1) };
        });
        const ports = (o['port'] as string[]).map((p) => integerOption('--port', 1, 65535)(p));
        const resources = {
          ...(o['gpus'] !== undefined ? { gpuCount: o['gpus'] } : {}),
          ...(o['cpu'] !== undefined ? { cpuMillicores: { requests: o['cpu'] } } : {}),
          ...(o['memory'] !== undefined ? { memoryMegabytes: { requests: o['memory'] } } : {}),
          ...(o['storage'] !== undefined ? { storageMegabytes: { requests: o['storage'] } } : {}),
        };
        const input = {
          name,
          image: o['image'],
          ...(Object.keys(resources).length ? { resources } : {}),
          ...(envs.length ? { envs } : {}),
          ...(ports.length ? { additionalExposedPorts: ports } : {}),
        };
        const { createNotebook: notebook } = await inv
          .client()
          .graphql<{ createNotebook: NotebookView }>(`mutation ($input: CreateNotebookInput!) { createNotebook(input: $input) { ${NOTEBOOK_FIELDS} } }`, {
            input,
          });
        if (inv.format !== 'table') return printData(inv.format, notebook);
        process.stdout.write(
          `Notebook ${notebook.id} (${notebook.name}) ${status(notebook)} (open it once running: mariner notebooks open ${notebook.name})\n`,
        );
      }),
    );

  notebooks
    .command('list')
    .description("the project's notebooks, newest first")
    .action(run(async (inv) => printList(inv.format, await listNotebooks(inv.client()), COLUMNS)));

  notebooks
    .command('get')
    .argument('<notebook>', 'the notebook, by id or name')
    .description('one notebook (-o json includes its Jupyter token)')
    .action(
      run(async (inv, idOrName: string) => {
        const notebook = await findNotebook(inv.client(), idOrName);
        if (inv.format !== 'table') return printData(inv.format, notebook);
        printObject('table', {
          id: notebook.id,
          name: notebook.name,
          status: status(notebook),
          image: notebook.image,
          gpus: notebook.resources.gpuCount,
          ports: [8888, ...notebook.additionalExposedPorts],
          cluster: notebook.clusterId,
          namespace: notebook.kubernetesNamespace,
          created: notebook.createdAt,
          started: notebook.startedAt,
          stopped: notebook.stoppedAt,
        });
      }),
    );

  notebooks
    .command('open')
    .argument('<notebook>', 'the notebook, by id or name')
    .description("open a running notebook's JupyterLab in the browser, signed in with this context's credential")
    .option('--no-browser', 'only print the sign-in URL (it holds no API key, and signs in once, within a minute)')
    .option('--port <port>', 'another exposed port of the notebook instead of JupyterLab', integerOption('--port', 1, 65535))
    .action(
      run(async (inv, idOrName: string) => {
        const client = inv.client();
        const notebook = await findNotebook(client, idOrName);
        if (notebook.status !== 'RUNNING' || !notebook.clusterId || !notebook.kubernetesNamespace) {
          const hint = notebook.status === 'STOPPED' ? `: start it first (mariner notebooks start ${notebook.name})` : '';
          throw new CliError(`notebook ${notebook.name} is ${status(notebook)}, not running${hint} (FAILED_PRECONDITION)`, 'FAILED_PRECONDITION');
        }
        const port: number | undefined = inv.options['port'];
        if (port !== undefined && port !== 8888 && !notebook.additionalExposedPorts.includes(port)) {
          throw new UsageError(`notebook ${notebook.name} exposes ports ${[8888, ...notebook.additionalExposedPorts].join(', ')}, not ${port}`);
        }
        const target = { id: notebook.id, clusterId: notebook.clusterId, kubernetesNamespace: notebook.kubernetesNamespace };
        const url = notebookUrl(client.context.url, target, port);
        // ?login_ticket= signs the browser in once, within a minute (the platform answers with a session cookie
        // and a redirect to the URL without it): the context's credential stays out of the browser's history.
        // ?token= is Jupyter's own login.
        const { ticket } = await client.restJson<LoginTicket>('POST', '/v1/sessions/login_tickets', { path: notebookUrl('', target, port) });
        const signIn = new URL(url);
        signIn.searchParams.set('login_ticket', ticket);
        if (!port || port === 8888) signIn.searchParams.set('token', notebook.token);
        const opened = inv.options['browser'] !== false && openBrowser(signIn.href);
        const view = { id: notebook.id, name: notebook.name, url, opened, ...(opened ? {} : { signInUrl: signIn.href }) };
        if (inv.format !== 'table') return printData(inv.format, view);
        if (opened) process.stdout.write(`Opened ${url} in the browser\n`);
        else {
          process.stderr.write('mariner: open this URL in a browser within a minute (it signs in once; run this again for another):\n');
          process.stdout.write(`${signIn.href}\n`);
        }
      }),
    );

  for (const [verb, mutation, what] of [
    ['stop', 'stopNotebook', 'scale a notebook down (its disk stays; start brings it back)'],
    ['start', 'startNotebook', 'start a stopped notebook again'],
    ['delete', 'deleteNotebook', 'remove a notebook from its cluster and the project, with its API key'],
  ] as const) {
    notebooks
      .command(verb)
      .argument('<notebook>', 'the notebook, by id or name')
      .description(what)
      .action(
        run(async (inv, idOrName: string) => {
          const client = inv.client();
          const { id } = await findNotebook(client, idOrName);
          const result = await client.graphql<Record<string, NotebookView>>(`mutation ($id: ID!) { ${mutation}(id: $id) { ${NOTEBOOK_FIELDS} } }`, { id });
          const notebook = result[mutation]!;
          if (inv.format !== 'table') return printData(inv.format, notebook);
          process.stdout.write(`Notebook ${notebook.id} (${notebook.name}) ${verb === 'delete' ? 'deleted' : status(notebook)}\n`);
        }),
      );
  }
}
