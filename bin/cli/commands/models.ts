import type { Command } from 'commander';
import type { ApiClient } from '../client.js';
import { CliError, UsageError } from '../errors.js';
import { printData, printList, printObject, renderTable, type Column } from '../output.js';
import { integerOption, run } from '../command.js';
import { uploadFile } from './files.js';
import { listAll } from '../pages.js';

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
    listAll<Omit<ModelView, 'runtimes'>>(client, 'models', MODEL_FIELDS, { args: 'includeLoading: true' }),
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

/**
 * Reads the model again until its load has ended (there is no subscription for loading): every second,
 * a line on stderr when its status or message changes. A failed load is a CliError with the reason.
 */
async function waitLoaded(client: ApiClient, id: string, verbose: boolean): Promise<ModelView> {
  let said = '';
  for (;;) {
    const model = await getModel(client, id);
    const line = `${model.id}: ${model.loadingStatus.toLowerCase()}${model.loadingStatusMessage ? ` (${model.loadingStatusMessage})` : ''}`;
    if (verbose && line !== said) process.stderr.write(`${line}\n`);
    said = line;
    if (model.loadingStatus === 'SUCCEEDED') return model;
    if (model.loadingStatus === 'FAILED')
      throw new CliError(`model ${model.id} failed to load: ${model.loadingFailureReason ?? model.loadingStatusMessage ?? 'no reason given'}`, 'LOAD_FAILED');
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

export function registerModels(program: Command): void {
  const models = program
    .command('models')
    .description('the models the project sees: list with loading status and runtimes, get, create, activate, deactivate, delete')
    .addHelpText(
      'after',
      `
Examples:
  mariner models list
  mariner models list --watch            # redrawn whenever a runtime reports (loading, scaling)
  mariner models create tiny --file ./tinyllama.Q4_K_M.gguf --wait
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

  models
    .command('create')
    .argument(
      '<id>',
      "the model's name (a base model, e.g. meta-llama/Llama-3.1-8B-Instruct; stored with `/` as `-`) or, with --base-model, the fine-tuned model's suffix",
    )
    .description(
      "register a model: a base model from Hugging Face, Ollama, an object or a file (loaded by a cluster's loader), or with --base-model a fine-tuned one",
    )
    .option('--hugging-face <repo>', 'a Hugging Face repository (org/name)')
    .option('--ollama <model>', 'an Ollama model (name or name:tag)')
    .option('--object <path>', "an object in the platform's store (s3://bucket/path, or a key)")
    .option('--file <path|file-id>', 'a file of the project (file-...), or a local file, uploaded first (a .gguf: a GGUF model)')
    .option('--catalog', "the tenant's catalog: every project sees it (default: the current project only)")
    .option('--base-model <model>', 'register a fine-tuned model of this base model (its weights or adapter at --object or --file); the id is then its suffix')
    .option('--gpus <n>', 'GPUs per replica', integerOption('--gpus', 0, 1024))
    .option('--replicas <n>', 'replicas', integerOption('--replicas', 0, 1000))
    .option('--on-demand', 'the first request activates it')
    .option('--wait', 'wait until it is loaded (or its load failed: exit 1); a progress line on stderr')
    .addHelpText(
      'after',
      `
Base models are the platform admins' to create; a cluster's loader fetches them (loading: requested, then
loading, then succeeded or failed). Then \`mariner models activate ID\` serves it.

Examples:
  mariner models create meta-llama/Llama-3.1-8B-Instruct --hugging-face meta-llama/Llama-3.1-8B-Instruct --catalog
  mariner models create tiny --file ./tinyllama.Q4_K_M.gguf --wait
  mariner models create qwen2 --ollama qwen2:0.5b
  mariner models create my-lora --base-model mariner-demo-base --file file-1234`,
    )
    .action(
      run(async (inv, id: string) => {
        const o = inv.options;
        const sources = (['huggingFace', 'ollama', 'object', 'file'] as const).filter((k) => o[k] !== undefined);
        if (sources.length !== 1) throw new UsageError('give exactly one source: --hugging-face, --ollama, --object or --file');
        const client = inv.client();
        const kind = sources[0]!;
        let source: string = o[kind];
        if (kind === 'file' && !/^file-[A-Za-z0-9]+$/.test(source)) {
          source = (await uploadFile(client, source, 'user_data')).id;
          if (inv.format === 'table') process.stderr.write(`Uploaded ${o['file']} as ${source}\n`);
        }
        const runtime = {
          ...(o['gpus'] !== undefined ? { gpu: o['gpus'] } : {}),
          ...(o['replicas'] !== undefined ? { replicas: o['replicas'] } : {}),
        };
        const config = {
          ...(Object.keys(runtime).length ? { runtime } : {}),
          ...(o['onDemand'] ? { clusterAllocationPolicy: { enableOnDemandAllocation: true } } : {}),
        };
        let created: Omit<ModelView, 'runtimes'>;
        if (o['baseModel']) {
          if (kind === 'huggingFace' || kind === 'ollama') throw new UsageError('a fine-tuned model comes from --object or --file');
          if (o['catalog']) throw new UsageError("--catalog is for base models: a fine-tuned model is the project's");
          if (kind === 'file') {
            const { file } = await client.graphql<{ file: { objectStorePath: string } | null }>(`query ($id: ID!) { file(id: $id) { objectStorePath } }`, {
              id: source,
            });
            if (!file) throw new CliError(`file ${source} not found (NOT_FOUND)`, 'NOT_FOUND');
            source = file.objectStorePath;
          }
          created = (
            await client.graphql<{ registerFineTunedModel: Omit<ModelView, 'runtimes'> }>(
              `mutation ($input: RegisterFineTunedModelInput!) { registerFineTunedModel(input: $input) { ${MODEL_FIELDS} } }`,
              { input: { baseModelId: o['baseModel'], suffix: id, source, ...(Object.keys(config).length ? { config } : {}) } },
            )
          ).registerFineTunedModel;
        } else {
          const repository = { huggingFace: 'HUGGING_FACE', ollama: 'OLLAMA', object: 'OBJECT_STORE', file: 'FILE' }[kind];
          created = (
            await client.graphql<{ createBaseModel: Omit<ModelView, 'runtimes'> }>(
              `mutation ($input: CreateBaseModelInput!) { createBaseModel(input: $input) { ${MODEL_FIELDS} } }`,
              {
                input: {
                  id,
                  sourceRepository: repository,
                  source,
                  isProjectScoped: !o['catalog'],
                  ...(Object.keys(config).length ? { config } : {}),
                },
              },
            )
          ).createBaseModel;
        }
        let model = withRuntimes(created, []);
        if (o['wait']) model = await waitLoaded(client, model.id, inv.format === 'table' || !!process.stderr.isTTY);
        if (inv.format !== 'table') return printData(inv.format, model);
        process.stdout.write(
          `Model ${model.id} ${o['baseModel'] ? 'registered' : 'created'}: loading ${COLUMNS[2]!.value(model)}, ${model.activationStatus.toLowerCase()}` +
            (model.loadingStatus === 'SUCCEEDED'
              ? ` (serve it: mariner models activate ${model.id})\n`
              : ` (mariner models get ${model.id} shows its loading)\n`),
        );
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
