import type { Command } from 'commander';
import type { ApiClient } from '../client.js';
import { CliError } from '../errors.js';
import { printData, printList, printObject, renderTable, type Column } from '../output.js';
import { run } from '../command.js';
import { allPages } from '../pages.js';

const MODEL_FIELDS = `id createdAt ownedBy isBaseModel baseModelId sourceRepository source loadingStatus loadingStatusMessage loadingFailureReason
  formats activationStatus projectId adapter { kind baseModelId }`;
const RUNTIME_FIELDS = `clusterId modelId desiredReplicas readyReplicas inFlightRequests statusMessage`;

interface Runtime {
  clusterId: string;
  modelId: string;
  desiredReplicas: number;
  readyReplicas: number;
  inFlightRequests: number;
  statusMessage: string;
}

export interface ModelView {
  id: string;
  createdAt: string;
  ownedBy: string;
  isBaseModel: boolean;
  baseModelId: string | null;
  sourceRepository: string;
  source: string;
  loadingStatus: string;
  loadingStatusMessage: string | null;
  loadingFailureReason: string | null;
  formats: string[];
  activationStatus: string;
  projectId: string | null;
  adapter: { kind: string; baseModelId: string } | null;
  /** The model's runtimes on the clusters the project may use: replicas ready of those wanted, per cluster. */
  runtimes: Omit<Runtime, 'modelId'>[];
}

const COLUMNS: Column<ModelView>[] = [
  { header: 'ID', value: (m) => m.id },
  { header: 'TYPE', value: (m) => (m.isBaseModel ? 'base' : m.adapter ? `adapter of ${m.adapter.baseModelId}` : `fine-tuned from ${m.baseModelId}`) },
  { header: 'LOADING', value: (m) => m.loadingStatus.toLowerCase() + (m.loadingFailureReason ? `: ${m.loadingFailureReason}` : '') },
  { header: 'ACTIVATION', value: (m) => m.activationStatus.toLowerCase() },
  { header: 'RUNTIMES', value: (m) => m.runtimes.map((r) => `${r.clusterId} ${r.readyReplicas}/${r.desiredReplicas} ready`).join(', ') || '-' },
  { header: 'SOURCE', value: (m) => `${m.sourceRepository.toLowerCase()}:${m.source}` },
];

async function runtimes(client: ApiClient): Promise<Runtime[]> {
  return (await client.graphql<{ inferenceStatus: { runtimes: Runtime[] } }>(`query { inferenceStatus { runtimes { ${RUNTIME_FIELDS} } } }`)).inferenceStatus
    .runtimes;
}

function withRuntimes(model: Omit<ModelView, 'runtimes'>, all: Runtime[]): ModelView {
  return { ...model, runtimes: all.filter((r) => r.modelId === model.id).map(({ modelId: _m, ...r }) => r) };
}

export async function listModels(client: ApiClient): Promise<ModelView[]> {
  const [models, running] = await Promise.all([
    allPages((after) =>
      client
        .graphql<{ models: { items: Omit<ModelView, 'runtimes'>[]; hasMore: boolean } }>(
          `query ($after: String) { models(includeLoading: true, after: $after, limit: 100) { items { ${MODEL_FIELDS} } hasMore } }`,
          { after },
        )
        .then((r) => r.models),
    ),
    runtimes(client),
  ]);
  return models.map((m) => withRuntimes(m, running));
}

async function getModel(client: ApiClient, id: string): Promise<ModelView> {
  const [{ model }, running] = await Promise.all([
    client.graphql<{ model: Omit<ModelView, 'runtimes'> | null }>(`query ($id: ID!) { model(id: $id, includeLoading: true) { ${MODEL_FIELDS} } }`, { id }),
    runtimes(client),
  ]);
  if (!model) throw new CliError(`model ${id} not found (NOT_FOUND)`, 'NOT_FOUND');
  return withRuntimes(model, running);
}

export function registerModels(program: Command): void {
  const models = program
    .command('models')
    .description('the models the project sees: list with loading status and runtimes, get, activate, deactivate, delete')
    .addHelpText(
      'after',
      `
Examples:
  mariner models list
  mariner models list --watch            # redrawn whenever a runtime reports (loading, scaling)
  mariner models activate meta-llama-Llama-3.1-8B-Instruct
  mariner models list -o json | jq -r '.items[].id'`,
    );

  models
    .command('list')
    .description('every model the project sees, loading ones included')
    .option('-w, --watch', 'keep watching: print again whenever a runtime changes (the runtimesUpdated subscription); Ctrl-C stops')
    .action(
      run(async (inv) => {
        const client = inv.client();
        const show = (items: ModelView[]) => {
          if (!inv.options['watch'] || inv.format === 'table') return printList(inv.format, items, COLUMNS);
          process.stdout.write(`${JSON.stringify({ items })}\n`);
        };
        if (!inv.options['watch']) return show(await listModels(client));
        const stop = new AbortController();
        process.once('SIGINT', () => stop.abort());
        let previous = '';
        try {
          for await (const _event of client.subscribe(`subscription { runtimesUpdated { readyModelIds } }`, undefined, stop.signal)) {
            const items = await listModels(client);
            const text = inv.format === 'table' ? renderTable(items, COLUMNS) : JSON.stringify(items);
            if (text === previous) continue;
            previous = text;
            if (inv.format === 'table' && process.stdout.isTTY) process.stdout.write('\x1b[2J\x1b[H');
            else if (inv.format === 'table') process.stdout.write(`--- ${new Date().toISOString()}\n`);
            show(items);
          }
        } catch (error) {
          if (!stop.signal.aborted) throw error;
        }
      }),
    );

  models
    .command('get')
    .argument('<model>', 'the model id (`/` or `-` alike)')
    .description('one model, with its runtimes')
    .action(
      run(async (inv, id: string) => {
        const model = await getModel(inv.client(), id);
        if (inv.format !== 'table') return printData(inv.format, model);
        printObject('table', {
          id: model.id,
          type: COLUMNS[1]!.value(model),
          loading: COLUMNS[2]!.value(model),
          loadingMessage: model.loadingStatusMessage,
          activation: model.activationStatus.toLowerCase(),
          formats: model.formats,
          source: COLUMNS[5]!.value(model),
          runtimes: COLUMNS[4]!.value(model),
          created: model.createdAt,
        });
      }),
    );

  for (const [verb, mutation, what] of [
    ['activate', 'activateModel', 'mark a loaded model active: engines deploy it'],
    ['deactivate', 'deactivateModel', 'mark a model inactive: its runtimes stop'],
  ] as const) {
    models
      .command(verb)
      .argument('<model>', 'the model id')
      .description(what)
      .action(
        run(async (inv, id: string) => {
          const result = await inv
            .client()
            .graphql<Record<string, { id: string; activationStatus: string }>>(`mutation ($id: ID!) { ${mutation}(id: $id) { id activationStatus } }`, { id });
          const model = result[mutation]!;
          if (inv.format === 'table') process.stdout.write(`Model ${model.id} is ${model.activationStatus.toLowerCase()}\n`);
          else printData(inv.format, model);
        }),
      );
  }

  models
    .command('delete')
    .argument('<model>', 'the model id')
    .description('delete a model (refused while it is active: deactivate it first)')
    .action(
      run(async (inv, id: string) => {
        const { deleteModel } = await inv
          .client()
          .graphql<{ deleteModel: { id: string; deleted: boolean } }>(`mutation ($id: ID!) { deleteModel(id: $id) { id deleted } }`, { id });
        if (inv.format === 'table') process.stdout.write(`Model ${deleteModel.id} deleted\n`);
        else printData(inv.format, deleteModel);
      }),
    );
}
