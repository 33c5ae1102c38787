import type { Command } from 'commander';
import type { ApiClient } from '../client.js';
import { CliError } from '../errors.js';
import { printData, printList, printObject } from '../output.js';
import { integerOption, run } from '../command.js';
import { listAll } from '../pages.js';

const JOB_FIELDS = `id createdAt startedAt finishedAt model status pendingAction fineTunedModel error { code message }
  trainingFile validationFile suffix trainedTokens clusterId attempts hyperparameters { nEpochs batchSize learningRateMultiplier }`;

interface JobView {
  id: string;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  model: string;
  status: string;
  pendingAction: string | null;
  fineTunedModel: string | null;
  error: { code: string; message: string } | null;
  trainingFile: string;
  validationFile: string | null;
  suffix: string;
  trainedTokens: number | null;
  clusterId: string | null;
  attempts: number;
  hyperparameters: { nEpochs: number | null; batchSize: number | null; learningRateMultiplier: number | null };
}

interface LogLine {
  offset: number;
  text: string;
}

const FINISHED = ['SUCCEEDED', 'FAILED', 'CANCELLED'];

async function getJob(client: ApiClient, id: string): Promise<JobView> {
  const { fineTuningJob } = await client.graphql<{ fineTuningJob: JobView | null }>(`query ($id: ID!) { fineTuningJob(id: $id) { ${JOB_FIELDS} } }`, { id });
  if (!fineTuningJob) throw new CliError(`fine-tuning job ${id} not found (NOT_FOUND)`, 'NOT_FOUND');
  return fineTuningJob;
}

/**
 * A job's log lines from `from` on, each once and in order, written as they come. Without `follow`: the
 * lines stored so far. With it: the jobLogs subscription until the job has finished; when the connection
 * drops, it subscribes again from the next offset not yet written (after a pause that grows up to 5 s), so
 * nothing is missed or written twice.
 */
export async function streamLogs(
  client: ApiClient,
  jobId: string,
  options: {
    from: number;
    follow: boolean;
    write: (line: LogLine) => void;
    signal?: AbortSignal;
    onReconnect?: (offset: number, reason: string) => void;
    /** The query field that reads the job's stored lines (default fineTuningJob; batchJob for batch jobs). */
    kind?: 'fineTuningJob' | 'batchJob';
  },
): Promise<number> {
  let next = options.from;
  const take = (lines: LogLine[]) => {
    for (const line of lines) {
      if (line.offset < next) continue;
      options.write(line);
      next = line.offset + 1;
    }
  };
  if (!options.follow) {
    for (;;) {
      const kind = options.kind ?? 'fineTuningJob';
      const answer = await client.graphql<Record<string, { logs: { lines: LogLine[]; nextOffset: number; hasMore: boolean } } | null>>(
        `query ($id: ID!, $from: Int) { ${kind}(id: $id) { logs(fromOffset: $from, limit: 1000) { lines { offset text } nextOffset hasMore } } }`,
        { id: jobId, from: next },
      );
      const job = answer[kind];
      if (!job) throw new CliError(`${kind === 'batchJob' ? 'batch' : 'fine-tuning'} job ${jobId} not found (NOT_FOUND)`, 'NOT_FOUND');
      take(job.logs.lines);
      if (!job.logs.hasMore) return next;
    }
  }
  let pause = 200;
  for (;;) {
    try {
      for await (const { jobLogs } of client.subscribe<{ jobLogs: { lines: LogLine[]; nextOffset: number } }>(
        `subscription ($id: ID!, $from: Int) { jobLogs(jobId: $id, fromOffset: $from) { lines { offset text } nextOffset } }`,
        { id: jobId, from: next },
        options.signal,
      )) {
        take(jobLogs.lines);
        pause = 200;
      }
      return next;
    } catch (error) {
      if (options.signal?.aborted) return next;
      if (!(error instanceof CliError) || error.code !== 'CONNECTION_LOST') throw error;
      options.onReconnect?.(next, error.message);
      await new Promise((resolve) => setTimeout(resolve, pause));
      pause = Math.min(pause * 2, 5000);
    }
  }
}

const COLUMNS = [
  { header: 'ID', value: (j: JobView) => j.id },
  { header: 'MODEL', value: (j: JobView) => j.model },
  { header: 'STATUS', value: (j: JobView) => j.status.toLowerCase() + (j.pendingAction ? ` (${j.pendingAction.toLowerCase()})` : '') },
  { header: 'FINE-TUNED MODEL', value: (j: JobView) => j.fineTunedModel ?? (j.error ? `error: ${j.error.message}` : '') },
  { header: 'CLUSTER', value: (j: JobView) => j.clusterId },
  { header: 'CREATED', value: (j: JobView) => j.createdAt },
];

export function registerFineTuning(program: Command): void {
  const jobs = program
    .command('fine-tuning')
    .description('fine-tuning jobs')
    .command('jobs')
    .description('fine-tuning jobs of the project: create, list, get, cancel, logs (-f follows them live)')
    .addHelpText(
      'after',
      `
Examples:
  mariner files create train.jsonl --purpose fine-tune
  mariner fine-tuning jobs create --model mariner-demo-base --training-file file-1234 --suffix demo
  mariner fine-tuning jobs logs ftjob-1234 -f
  mariner chat ft:mariner-demo-base:demo-abc123`,
    );

  jobs
    .command('create')
    .description('start a fine-tuning job')
    .requiredOption('--model <model>', 'the base model')
    .requiredOption('--training-file <file>', 'a file of the project with purpose fine-tune')
    .option('--validation-file <file>', 'a validation file')
    .option('--suffix <suffix>', "the fine-tuned model's suffix (lowercase letters, digits, dashes)")
    .option('--epochs <n>', 'training epochs', integerOption('--epochs', 1, 1000))
    .option('--batch-size <n>', 'batch size', integerOption('--batch-size', 1, 1 << 16))
    .option('--learning-rate-multiplier <x>', 'learning rate multiplier', Number)
    .option('--gpus <n>', 'GPUs for the trainer', integerOption('--gpus', 0, 1024))
    .action(
      run(async (inv) => {
        const o = inv.options;
        const hyperparameters = {
          ...(o['epochs'] !== undefined ? { nEpochs: o['epochs'] } : {}),
          ...(o['batchSize'] !== undefined ? { batchSize: o['batchSize'] } : {}),
          ...(o['learningRateMultiplier'] !== undefined ? { learningRateMultiplier: o['learningRateMultiplier'] } : {}),
        };
        const input = {
          model: o['model'],
          trainingFile: o['trainingFile'],
          ...(o['validationFile'] ? { validationFile: o['validationFile'] } : {}),
          ...(o['suffix'] ? { suffix: o['suffix'] } : {}),
          ...(Object.keys(hyperparameters).length ? { hyperparameters } : {}),
          ...(o['gpus'] !== undefined ? { gpuCount: o['gpus'] } : {}),
        };
        const { createFineTuningJob: job } = await inv
          .client()
          .graphql<{ createFineTuningJob: JobView }>(`mutation ($input: CreateFineTuningJobInput!) { createFineTuningJob(input: $input) { ${JOB_FIELDS} } }`, {
            input,
          });
        if (inv.format === 'table')
          process.stdout.write(`Fine-tuning job ${job.id} ${job.status.toLowerCase()} (follow it: mariner fine-tuning jobs logs ${job.id} -f)\n`);
        else printData(inv.format, job);
      }),
    );

  jobs
    .command('list')
    .description("the project's fine-tuning jobs, newest first")
    .action(
      run(async (inv) => {
        const client = inv.client();
        const items = await listAll<JobView>(client, 'fineTuningJobs', JOB_FIELDS);
        printList(inv.format, items, COLUMNS);
      }),
    );

  jobs
    .command('get')
    .argument('<job>', 'the job id (ftjob-...)')
    .description('one fine-tuning job')
    .action(
      run(async (inv, id: string) => {
        const job = await getJob(inv.client(), id);
        if (inv.format !== 'table') return printData(inv.format, job);
        printObject('table', {
          id: job.id,
          model: job.model,
          status: COLUMNS[2]!.value(job),
          fineTunedModel: job.fineTunedModel,
          error: job.error ? `${job.error.code}: ${job.error.message}` : null,
          trainingFile: job.trainingFile,
          validationFile: job.validationFile,
          cluster: job.clusterId,
          attempts: job.attempts,
          created: job.createdAt,
          started: job.startedAt,
          finished: job.finishedAt,
        });
      }),
    );

  jobs
    .command('cancel')
    .argument('<job>', 'the job id')
    .description('cancel a queued or running job')
    .action(
      run(async (inv, id: string) => {
        const { cancelFineTuningJob: job } = await inv
          .client()
          .graphql<{ cancelFineTuningJob: JobView }>(`mutation ($id: ID!) { cancelFineTuningJob(id: $id) { ${JOB_FIELDS} } }`, { id });
        if (inv.format === 'table')
          process.stdout.write(`Fine-tuning job ${job.id} ${job.status.toLowerCase()}${job.pendingAction ? ` (${job.pendingAction.toLowerCase()})` : ''}\n`);
        else printData(inv.format, job);
      }),
    );

  jobs
    .command('logs')
    .argument('<job>', 'the job id')
    .description("the trainer's output; -f follows it live until the job ends, resuming after a dropped connection")
    .option('-f, --follow', 'follow the log until the job has finished')
    .option('--from <offset>', 'start at this line (0 is the first)', integerOption('--from', 0), 0)
    .action(
      run(async (inv, id: string) => {
        const client = inv.client();
        const stop = new AbortController();
        const onSigint = () => stop.abort();
        process.once('SIGINT', onSigint);
        const lines: LogLine[] = [];
        try {
          await streamLogs(client, id, {
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
          const job = await getJob(client, id);
          if (FINISHED.includes(job.status))
            process.stderr.write(`mariner: job ${id} ${job.status.toLowerCase()}${job.fineTunedModel ? `: ${job.fineTunedModel}` : ''}\n`);
        }
      }),
    );
}
