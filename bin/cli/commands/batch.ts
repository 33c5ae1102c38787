import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Command } from 'commander';
import type { ApiClient } from '../client.js';
import { CliError, UsageError } from '../errors.js';
import { printData, printList, printObject } from '../output.js';
import { integerOption, run } from '../command.js';
import { execInPod, RemoteExit, sessionsGet, SessionsRefusal } from '../kubeExec.js';
import { listAll } from '../pages.js';
import { streamLogs } from './fineTuning.js';
import { uploadFile } from './files.js';

/**
 * Two kinds of batch work (docs/batch-jobs-and-notebooks.md):
 * - `mariner batch jobs`: LLMariner's batch jobs, a command in an image with scripts, data files and
 *   environment (GraphQL batchJobs, createBatchJob, ...; logs through the jobLogs subscription);
 * - `mariner batches`: OpenAI's Batch API, a JSONL file of inference requests run in the background.
 */

const JOB_FIELDS = `id createdAt startedAt finishedAt status pendingAction error { code message } image command envs { name value }
  dataFiles scripts gpuCount workerCount clusterId kubernetesNamespace attempts`;

interface BatchJobView {
  id: string;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  status: string;
  pendingAction: string | null;
  error: { code: string; message: string } | null;
  image: string;
  command: string;
  envs: { name: string; value: string }[];
  dataFiles: string[];
  scripts: string[];
  gpuCount: number;
  workerCount: number;
  clusterId: string | null;
  kubernetesNamespace: string | null;
  attempts: number;
}

const FINISHED = ['SUCCEEDED', 'FAILED', 'CANCELLED'];
/** The most script bytes a job takes (the platform's limit): refused here before anything is sent. */
const MAX_SCRIPT_BYTES = 1024 * 1024;

const status = (j: { status: string; pendingAction: string | null }) => j.status.toLowerCase() + (j.pendingAction ? ` (${j.pendingAction.toLowerCase()})` : '');

const JOB_COLUMNS = [
  { header: 'ID', value: (j: BatchJobView) => j.id },
  { header: 'STATUS', value: (j: BatchJobView) => status(j) + (j.error ? `: ${j.error.message}` : '') },
  { header: 'IMAGE', value: (j: BatchJobView) => j.image },
  { header: 'COMMAND', value: (j: BatchJobView) => (j.command.length > 40 ? `${j.command.slice(0, 39)}…` : j.command) },
  { header: 'CLUSTER', value: (j: BatchJobView) => j.clusterId },
  { header: 'CREATED', value: (j: BatchJobView) => j.createdAt },
];

async function getBatchJob(client: ApiClient, id: string): Promise<BatchJobView> {
  const { batchJob } = await client.graphql<{ batchJob: BatchJobView | null }>(`query ($id: ID!) { batchJob(id: $id) { ${JOB_FIELDS} } }`, { id });
  if (!batchJob) throw new CliError(`batch job ${id} not found (NOT_FOUND)`, 'NOT_FOUND');
  return batchJob;
}

/** The scripts of `--scripts DIR` (its regular files, not its subfolders) and `--script FILE`s, base64. */
export function readScripts(dirs: string[], files: string[]): { name: string; contentBase64: string }[] {
  const paths: string[] = [...files];
  for (const dir of dirs) {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch (error) {
      throw new UsageError(`cannot read the folder ${dir}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    for (const entry of entries) {
      if (entry.isDirectory()) throw new UsageError(`${join(dir, entry.name)}: a job's scripts are one flat folder (scripts/), not subfolders`);
      if (entry.isFile() && !entry.name.startsWith('.')) paths.push(join(dir, entry.name));
    }
  }
  const scripts = new Map<string, string>();
  let bytes = 0;
  for (const path of paths) {
    let content: Buffer;
    try {
      if (!statSync(path).isFile()) throw new UsageError(`${path} is not a regular file`);
      content = readFileSync(path);
    } catch (error) {
      if (error instanceof UsageError) throw error;
      throw new UsageError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    const name = basename(path);
    if (scripts.has(name)) throw new UsageError(`two scripts are named ${name}`);
    bytes += content.length;
    scripts.set(name, content.toString('base64'));
  }
  if (bytes > MAX_SCRIPT_BYTES) throw new UsageError(`the scripts are ${bytes} bytes: a job takes at most 1 MiB of scripts (put data in files: --data-file)`);
  return [...scripts].map(([name, contentBase64]) => ({ name, contentBase64 }));
}

/** `NAME=value` options as environment variables. */
function envVars(given: string[]): { name: string; value: string }[] {
  return given.map((pair) => {
    const at = pair.indexOf('=');
    if (at <= 0) throw new UsageError(`--env takes NAME=value, not "${pair}"`);
    return { name: pair.slice(0, at), value: pair.slice(at + 1) };
  });
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** The label the executor puts on a job's pods (lib/jobSpec.ts JOB_ID_LABEL; the CLI imports nothing of the platform). */
const JOB_ID_LABEL = 'mariner.dev/job-id';
/** Which worker of an Indexed Job a pod is (the Job controller's label, and its older annotation); a one-worker job's pod is 0. */
const COMPLETION_INDEX = 'batch.kubernetes.io/job-completion-index';

interface PodView {
  metadata: { name: string; creationTimestamp?: string; deletionTimestamp?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  status?: { phase?: string };
}

const workerOf = (pod: PodView) => Number(pod.metadata.labels?.[COMPLETION_INDEX] ?? pod.metadata.annotations?.[COMPLETION_INDEX] ?? '0');

/**
 * The running pod of a job's worker, found through /v1/sessions as the project sees the cluster: the
 * pods with the job's label (the executor's, agent/kubernetes/jobManifests.ts), that worker's newest.
 */
async function runningPodOf(client: ApiClient, job: BatchJobView & { clusterId: string; kubernetesNamespace: string }, worker: number): Promise<string> {
  const selector = encodeURIComponent(`${JOB_ID_LABEL}=${job.id}`);
  let pods: PodView[];
  try {
    ({ items: pods } = await sessionsGet<{ items: PodView[] }>(
      client.context,
      job.clusterId,
      `/api/v1/namespaces/${encodeURIComponent(job.kubernetesNamespace)}/pods?labelSelector=${selector}`,
    ));
  } catch (error) {
    // The agent of a `mariner up` machine runs jobs as local processes: it answers that it has no Kubernetes API.
    if (error instanceof SessionsRefusal && error.status === 404 && error.message.includes('local executor')) {
      throw new CliError(
        `job ${job.id} runs on cluster ${job.clusterId}, whose agent runs jobs as local processes: exec needs a Kubernetes cluster; read the job's output with mariner batch jobs logs ${job.id} (FAILED_PRECONDITION)`,
        'FAILED_PRECONDITION',
      );
    }
    throw sessionsError(error);
  }
  const mine = pods
    .filter((p) => workerOf(p) === worker && !p.metadata.deletionTimestamp)
    .sort((a, b) => String(b.metadata.creationTimestamp ?? '').localeCompare(String(a.metadata.creationTimestamp ?? '')));
  const running = mine.find((p) => p.status?.phase === 'Running');
  if (running) return running.metadata.name;
  const newest = mine[0];
  throw new CliError(
    newest
      ? `worker ${worker} of job ${job.id} is not running: its pod ${newest.metadata.name} is ${(newest.status?.phase ?? 'Pending').toLowerCase()} (FAILED_PRECONDITION)`
      : `job ${job.id} has no pod for worker ${worker} yet (FAILED_PRECONDITION)`,
    'FAILED_PRECONDITION',
  );
}

/** A refusal of /v1/sessions, in the words of the CLI; exec turned off says whom to ask. */
function sessionsError(error: unknown, jobId?: string): unknown {
  if (!(error instanceof SessionsRefusal)) return error;
  if (error.status === 403 && error.message.includes('MARINER_SESSIONS_EXEC')) {
    return new CliError(
      `exec into pods is turned off on this platform: ask its operator to turn it on (MARINER_SESSIONS_EXEC=true; Helm: global.sessions.allowExec)${
        jobId ? `; meanwhile, the job's output: mariner batch jobs logs ${jobId}` : ''
      } (FORBIDDEN)`,
      'FORBIDDEN',
    );
  }
  return new CliError(`${error.message} (${error.code})`, error.code);
}

function registerBatchJobs(program: Command): void {
  const jobs = program
    .command('batch')
    .description("batch jobs: commands in an image with the project's scripts and files (not OpenAI's batches: mariner batches)")
    .command('jobs')
    .description('batch jobs of the project: create from a script folder, list, get, logs (-f follows them live), exec, cancel, delete')
    .addHelpText(
      'after',
      `
Examples:
  mariner batch jobs create --image pytorch-2.1 --scripts ./train --command 'python scripts/train.py' --gpus 1 --workers 2
  mariner batch jobs create --image pytorch-2.1 --script hello.py --command 'python scripts/hello.py' --env GREETING=hi
  mariner batch jobs logs batchjob-1234 -f
  mariner batch jobs exec batchjob-1234 -it -- bash
  mariner batch jobs list -o json | jq -r '.items[] | select(.status == "FAILED") | .id'`,
    );

  jobs
    .command('create')
    .description('start a batch job: its scripts go to scripts/, its data files to data/, and the command runs there')
    .requiredOption('--image <image>', 'an image preset (e.g. pytorch-2.1) or an image reference')
    .requiredOption('--command <command>', 'run with /bin/sh -c in the folder holding scripts/ and data/')
    .option('--scripts <dir>', "a folder whose files are the job's scripts (1 MiB in all; repeatable)", collect, [])
    .option('--script <file>', 'one script file (repeatable)', collect, [])
    .option('--data-file <file-id>', 'a file of the project, downloaded to data/ (repeatable)', collect, [])
    .option('--env <NAME=value>', 'an environment variable (repeatable)', collect, [])
    .option('--gpus <n>', 'GPUs per worker', integerOption('--gpus', 0, 1024))
    .option('--workers <n>', 'PyTorch workers (more than 1: distributed, with MASTER_ADDR, WORLD_SIZE and RANK)', integerOption('--workers', 1, 64))
    .action(
      run(async (inv) => {
        const o = inv.options;
        const scripts = readScripts(o['scripts'], o['script']);
        const envs = envVars(o['env']);
        const input = {
          image: o['image'],
          command: o['command'],
          ...(scripts.length ? { scripts } : {}),
          ...(envs.length ? { envs } : {}),
          ...(o['dataFile'].length ? { dataFiles: o['dataFile'] } : {}),
          ...(o['gpus'] !== undefined ? { gpuCount: o['gpus'] } : {}),
          ...(o['workers'] !== undefined ? { workerCount: o['workers'] } : {}),
        };
        const { createBatchJob: job } = await inv
          .client()
          .graphql<{ createBatchJob: BatchJobView }>(`mutation ($input: CreateBatchJobInput!) { createBatchJob(input: $input) { ${JOB_FIELDS} } }`, { input });
        if (inv.format === 'table') process.stdout.write(`Batch job ${job.id} ${status(job)} (follow it: mariner batch jobs logs ${job.id} -f)\n`);
        else printData(inv.format, job);
      }),
    );

  jobs
    .command('list')
    .description("the project's batch jobs, newest first")
    .action(
      run(async (inv) => {
        const client = inv.client();
        const items = await listAll<BatchJobView>(client, 'batchJobs', JOB_FIELDS);
        printList(inv.format, items, JOB_COLUMNS);
      }),
    );

  jobs
    .command('get')
    .argument('<job>', 'the job id (batchjob-...)')
    .description('one batch job')
    .action(
      run(async (inv, id: string) => {
        const job = await getBatchJob(inv.client(), id);
        if (inv.format !== 'table') return printData(inv.format, job);
        printObject('table', {
          id: job.id,
          status: status(job),
          error: job.error ? `${job.error.code}: ${job.error.message}` : null,
          image: job.image,
          command: job.command,
          scripts: job.scripts,
          dataFiles: job.dataFiles,
          envs: job.envs.map((e) => e.name),
          gpus: job.gpuCount,
          workers: job.workerCount,
          cluster: job.clusterId,
          namespace: job.kubernetesNamespace,
          attempts: job.attempts,
          created: job.createdAt,
          started: job.startedAt,
          finished: job.finishedAt,
        });
      }),
    );

  for (const [verb, mutation, what] of [
    ['cancel', 'cancelBatchJob', 'cancel a queued or running job'],
    ['delete', 'deleteBatchJob', 'delete a finished job and its output (cancel a running one first)'],
  ] as const) {
    jobs
      .command(verb)
      .argument('<job>', 'the job id')
      .description(what)
      .action(
        run(async (inv, id: string) => {
          const fields = verb === 'cancel' ? JOB_FIELDS : 'id deleted';
          const result = await inv
            .client()
            .graphql<Record<string, BatchJobView & { deleted?: boolean }>>(`mutation ($id: ID!) { ${mutation}(id: $id) { ${fields} } }`, { id });
          const job = result[mutation]!;
          if (inv.format !== 'table') return printData(inv.format, job);
          process.stdout.write(verb === 'cancel' ? `Batch job ${job.id} ${status(job)}\n` : `Batch job ${job.id} deleted\n`);
        }),
      );
  }

  jobs
    .command('exec')
    .argument('<job>', 'the job id')
    .argument('<command...>', 'the command and its arguments, after --')
    .description("run a command in a running job's container, as kubectl exec does (a Kubernetes cluster, exec turned on by the operator)")
    .option('--worker <n>', 'which worker (PyTorch rank) of a multi-worker job', integerOption('--worker', 0, 63), 0)
    .option('-i, --stdin', 'pass standard input to the command')
    .option('-t, --tty', 'give the command a terminal (the local one in raw mode, resized with it)')
    .option('-c, --container <name>', "the container (default: the job's main one)")
    .addHelpText(
      'after',
      `
The platform's operator must turn exec on (MARINER_SESSIONS_EXEC=true; Helm: global.sessions.allowExec);
the job must run on a Kubernetes cluster. The exit status is the command's (a refusal by Mariner: 1).

Examples:
  mariner batch jobs exec batchjob-1234 -- nvidia-smi
  mariner batch jobs exec batchjob-1234 -it -- bash
  mariner batch jobs exec batchjob-1234 --worker 1 -- ls /data
  tar c results | mariner batch jobs exec batchjob-1234 -i -- tar x -C /tmp`,
    )
    .action(
      run(async (inv, id: string, command: string[]) => {
        const client = inv.client();
        const job = await getBatchJob(client, id);
        const worker: number = inv.options['worker'];
        if (worker >= job.workerCount)
          throw new UsageError(
            `--worker ${worker}: job ${id} has ${job.workerCount === 1 ? 'one worker (0)' : `${job.workerCount} workers (0 to ${job.workerCount - 1})`}`,
          );
        if (FINISHED.includes(job.status))
          throw new CliError(
            `job ${id} has ${status(job)}: there is nothing to exec into; its output: mariner batch jobs logs ${id} (FAILED_PRECONDITION)`,
            'FAILED_PRECONDITION',
          );
        if (job.status !== 'RUNNING' || !job.clusterId || !job.kubernetesNamespace) {
          throw new CliError(
            `job ${id} is ${status(job)}, not running yet: exec needs its container started; follow it with mariner batch jobs logs ${id} -f (FAILED_PRECONDITION)`,
            'FAILED_PRECONDITION',
          );
        }
        const placed = { ...job, clusterId: job.clusterId, kubernetesNamespace: job.kubernetesNamespace };
        const pod = await runningPodOf(client, placed, worker);
        let code: number;
        try {
          code = await execInPod(
            client.context,
            {
              clusterId: placed.clusterId,
              namespace: placed.kubernetesNamespace,
              pod,
              container: inv.options['container'],
              command,
              stdin: Boolean(inv.options['stdin']),
              tty: Boolean(inv.options['tty']),
            },
            { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr },
          );
        } catch (error) {
          throw sessionsError(error, id);
        }
        if (code !== 0) throw new RemoteExit(code);
      }),
    );

  jobs
    .command('logs')
    .argument('<job>', 'the job id')
    .description("the job's output; -f follows it live until the job ends, resuming after a dropped connection")
    .option('-f, --follow', 'follow the output until the job has finished')
    .option('--from <offset>', 'start at this line (0 is the first)', integerOption('--from', 0), 0)
    .action(
      run(async (inv, id: string) => {
        const client = inv.client();
        const stop = new AbortController();
        const onSigint = () => stop.abort();
        process.once('SIGINT', onSigint);
        const lines: { offset: number; text: string }[] = [];
        try {
          await streamLogs(client, id, {
            kind: 'batchJob',
            from: inv.options['from'],
            follow: !!inv.options['follow'],
            signal: stop.signal,
            write: (line) => (inv.format === 'table' ? process.stdout.write(`${line.text}\n`) : lines.push(line)),
            onReconnect: (offset, reason) => process.stderr.write(`mariner: ${reason}; resuming at line ${offset}\n`),
          });
        } finally {
          process.off('SIGINT', onSigint);
        }
        if (inv.format !== 'table') printData(inv.format, { jobId: id, lines });
        else if (inv.options['follow'] && !stop.signal.aborted) {
          const job = await getBatchJob(client, id);
          if (FINISHED.includes(job.status))
            process.stderr.write(`mariner: job ${id} ${job.status.toLowerCase()}${job.error ? `: ${job.error.message}` : ''}\n`);
        }
      }),
    );
}

const BATCH_FIELDS = `id endpoint model inputFileId completionWindow status outputFileId errorFileId errors { code message param line }
  requestCounts { total completed failed } metadata createdAt inProgressAt expiresAt completedAt failedAt cancelledAt`;

interface BatchView {
  id: string;
  endpoint: string;
  model: string | null;
  inputFileId: string;
  completionWindow: string;
  status: string;
  outputFileId: string | null;
  errorFileId: string | null;
  errors: { code: string; message: string; param: string | null; line: number | null }[];
  requestCounts: { total: number; completed: number; failed: number };
  metadata: Record<string, string> | null;
  createdAt: string;
  inProgressAt: string | null;
  expiresAt: string;
  completedAt: string | null;
  failedAt: string | null;
  cancelledAt: string | null;
}

const BATCH_ENDED = ['COMPLETED', 'FAILED', 'EXPIRED', 'CANCELLED'];
const ENDPOINTS = ['/v1/chat/completions', '/v1/completions', '/v1/embeddings'];

const counts = (b: BatchView) =>
  `${b.requestCounts.completed}/${b.requestCounts.total} done${b.requestCounts.failed ? `, ${b.requestCounts.failed} failed` : ''}`;

const BATCH_COLUMNS = [
  { header: 'ID', value: (b: BatchView) => b.id },
  { header: 'STATUS', value: (b: BatchView) => b.status.toLowerCase() },
  { header: 'REQUESTS', value: (b: BatchView) => counts(b) },
  { header: 'ENDPOINT', value: (b: BatchView) => b.endpoint },
  { header: 'MODEL', value: (b: BatchView) => b.model },
  { header: 'OUTPUT', value: (b: BatchView) => b.outputFileId },
  { header: 'CREATED', value: (b: BatchView) => b.createdAt },
];

function showBatch(format: Parameters<typeof printData>[0] | 'table', batch: BatchView): void {
  if (format !== 'table') return printData(format, batch);
  printObject('table', {
    id: batch.id,
    status: batch.status.toLowerCase(),
    requests: counts(batch),
    endpoint: batch.endpoint,
    model: batch.model,
    inputFile: batch.inputFileId,
    outputFile: batch.outputFileId,
    errorFile: batch.errorFileId,
    errors: batch.errors.map((e) => `${e.line ? `line ${e.line}: ` : ''}${e.message} (${e.code})`),
    created: batch.createdAt,
    expires: batch.expiresAt,
    completed: batch.completedAt,
  });
}

/** Follows a batch (batchUpdated) until it has ended; each change of status or counts is a line on stderr. */
async function watchBatch(client: ApiClient, id: string): Promise<BatchView> {
  let last: BatchView | undefined;
  let said = '';
  for await (const { batchUpdated } of client.subscribe<{ batchUpdated: BatchView }>(`subscription ($id: ID!) { batchUpdated(id: $id) { ${BATCH_FIELDS} } }`, {
    id,
  })) {
    last = batchUpdated;
    const line = `${batchUpdated.id}: ${batchUpdated.status.toLowerCase()}, ${counts(batchUpdated)}`;
    if (line !== said) process.stderr.write(`${line}\n`);
    said = line;
    if (BATCH_ENDED.includes(batchUpdated.status)) break;
  }
  if (!last) throw new CliError(`batch ${id} not found (NOT_FOUND)`, 'NOT_FOUND');
  return last;
}

function registerBatches(program: Command): void {
  const batches = program
    .command('batches')
    .description('OpenAI batches: a JSONL file of inference requests answered in the background (not batch jobs: mariner batch jobs)')
    .addHelpText(
      'after',
      `
Each line of the input file is one request: {"custom_id": "1", "method": "POST", "url": "/v1/chat/completions", "body": {...}}.

Examples:
  mariner batches create --input-file requests.jsonl --wait
  mariner batches list
  mariner files download "$(mariner batches get batch_1234 -o json | jq -r .outputFileId)" --out answers.jsonl`,
    );

  batches
    .command('create')
    .description('run a file of requests: a local JSONL file (uploaded with purpose batch) or a file id')
    .requiredOption('--input-file <path|file-id>', 'the requests: a local .jsonl file, or a file of the project with purpose batch')
    .option('--endpoint <path>', `where every request goes: ${ENDPOINTS.join(', ')}`, '/v1/chat/completions')
    .option('--completion-window <window>', 'only 24h', '24h')
    .option('--metadata <key=value>', 'a metadata pair (repeatable)', collect, [])
    .option('--wait', 'follow it until it has ended (progress on stderr), then show it')
    .action(
      run(async (inv) => {
        const o = inv.options;
        if (!ENDPOINTS.includes(o['endpoint'])) throw new UsageError(`--endpoint must be one of ${ENDPOINTS.join(', ')}, not "${o['endpoint']}"`);
        const metadata = Object.fromEntries(envVars(o['metadata']).map((e) => [e.name, e.value]));
        const client = inv.client();
        let inputFileId: string = o['inputFile'];
        if (!/^file-[A-Za-z0-9]+$/.test(inputFileId)) {
          inputFileId = (await uploadFile(client, inputFileId, 'batch')).id;
          if (inv.format === 'table') process.stderr.write(`Uploaded ${o['inputFile']} as ${inputFileId}\n`);
        }
        const input = {
          inputFileId,
          endpoint: o['endpoint'],
          completionWindow: o['completionWindow'],
          ...(Object.keys(metadata).length ? { metadata } : {}),
        };
        let { createBatch: batch } = await client.graphql<{ createBatch: BatchView }>(
          `mutation ($input: CreateBatchInput!) { createBatch(input: $input) { ${BATCH_FIELDS} } }`,
          { input },
        );
        if (o['wait']) batch = await watchBatch(client, batch.id);
        if (inv.format !== 'table') return printData(inv.format, batch);
        if (o['wait']) return showBatch('table', batch);
        process.stdout.write(
          `Batch ${batch.id} ${batch.status.toLowerCase()} (${batch.requestCounts.total} requests; follow it: mariner batches get ${batch.id} --watch)\n`,
        );
      }),
    );

  batches
    .command('list')
    .description("the project's batches, newest first")
    .action(
      run(async (inv) => {
        const client = inv.client();
        const items = await listAll<BatchView>(client, 'batches', BATCH_FIELDS);
        printList(inv.format, items, BATCH_COLUMNS);
      }),
    );

  batches
    .command('get')
    .argument('<batch>', 'the batch id (batch_...)')
    .description('one batch; --watch follows it until it has ended')
    .option('-w, --watch', 'follow its status and counts (the batchUpdated subscription) until it has ended')
    .action(
      run(async (inv, id: string) => {
        const client = inv.client();
        let batch: BatchView;
        if (inv.options['watch']) batch = await watchBatch(client, id);
        else {
          const { batch: found } = await client.graphql<{ batch: BatchView | null }>(`query ($id: ID!) { batch(id: $id) { ${BATCH_FIELDS} } }`, { id });
          if (!found) throw new CliError(`batch ${id} not found (NOT_FOUND)`, 'NOT_FOUND');
          batch = found;
        }
        showBatch(inv.format, batch);
      }),
    );

  batches
    .command('cancel')
    .argument('<batch>', 'the batch id')
    .description('cancel a batch: no request of it starts any more; those running finish')
    .action(
      run(async (inv, id: string) => {
        const { cancelBatch: batch } = await inv
          .client()
          .graphql<{ cancelBatch: BatchView }>(`mutation ($id: ID!) { cancelBatch(id: $id) { ${BATCH_FIELDS} } }`, { id });
        if (inv.format !== 'table') return printData(inv.format, batch);
        process.stdout.write(`Batch ${batch.id} ${batch.status.toLowerCase()}\n`);
      }),
    );
}

export function registerBatch(program: Command): void {
  registerBatchJobs(program);
  registerBatches(program);
}
