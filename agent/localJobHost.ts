import { type ChildProcess, spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { pipeline } from 'node:stream/promises';
import type { Logger } from '../lib/logging.js';
import type { ObjectStore } from '../lib/objectStore/index.js';
import { JobRefusedError, type DispatchedJob, type JobHost } from './executor.js';
import { trainedTokensOf, type JobReporter } from './jobReporter.js';

/** The fine-tuning spec as the jobs subgraph sends it (subgraphs/jobs/store.ts FineTuningSpec). */
interface FineTuningSpec {
  kind: 'fine-tuning';
  baseModel: { id: string; source: string; formats: string[] };
  trainingFile: { id: string; objectKey: string; filename: string };
  validationFile: { id: string; objectKey: string; filename: string } | null;
  outputPrefix: string;
  method: { type: string; hyperparameters: Record<string, number | null> };
  seed: number;
  gpuCount: number;
  attempt?: number;
  logOffset?: number;
}

interface RunningJob {
  attempt: number;
  child: ChildProcess | undefined;
  cancelled: boolean;
  /** The agent is shutting down: report nothing (the control plane requeues the job when the agent is back without it). */
  abandoned: boolean;
  done: Promise<void>;
}

/** Lines of output kept for the failure message (LLMariner: the termination log). */
const TAIL_LINES = 20;
const STOP_GRACE_MS = 10_000;

/** Safe file names for inputs: the basename, without anything a shell or a path could misread. */
function localName(filename: string, fallback: string): string {
  const base = path.basename(filename).replace(/[^A-Za-z0-9._-]/g, '_');
  return base === '' || base.startsWith('.') ? fallback : base;
}

async function* filesUnder(dir: string): AsyncGenerator<string> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* filesUnder(full);
    else if (entry.isFile()) yield full;
  }
}

/**
 * Fine-tuning jobs as child processes on this machine (the local executor). For each job: the
 * training (and validation) file is fetched from the platform's object store into a work folder,
 * the configured trainer runs with the job in its environment, its output lines go to the control
 * plane as they come, and on success everything it wrote to MARINER_OUTPUT_DIR is stored under the
 * job's output prefix. The trainer contract (environment, progress lines) is in agent/README.md.
 */
export function createLocalJobHost(options: {
  trainerCommand: string[] | undefined;
  objectStore: ObjectStore | undefined;
  workDir: string;
  reporter: JobReporter;
  logger: Logger;
}): JobHost {
  const jobs = new Map<string, RunningJob>();
  const { reporter } = options;

  async function run(id: string, spec: FineTuningSpec, entry: RunningJob): Promise<void> {
    const store = options.objectStore!;
    const dir = path.join(options.workDir, id, `attempt-${entry.attempt}`);
    const log = options.logger.child({ jobId: id, attempt: entry.attempt });
    const tail: string[] = [];
    let trainedTokens: number | null = null;
    const line = (text: string) => {
      reporter.line(id, text);
      tail.push(text);
      if (tail.length > TAIL_LINES) tail.shift();
      trainedTokens = trainedTokensOf(text) ?? trainedTokens;
    };
    try {
      await rm(dir, { recursive: true, force: true });
      await mkdir(path.join(dir, 'input'), { recursive: true });
      await mkdir(path.join(dir, 'output'), { recursive: true });
      const fetch = async (file: { objectKey: string; filename: string }, fallback: string) => {
        const target = path.join(dir, 'input', localName(file.filename, fallback));
        await pipeline(await store.get(file.objectKey), createWriteStream(target));
        return target;
      };
      const trainingFile = await fetch(spec.trainingFile, 'training.jsonl');
      const validationFile = spec.validationFile ? await fetch(spec.validationFile, 'validation.jsonl') : '';
      if (entry.cancelled) return void (await reporter.phase(id, { phase: 'CANCELLED' }));
      const [command, ...args] = options.trainerCommand!;
      const child = spawn(command!, args, {
        cwd: dir,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {
          ...process.env,
          MARINER_JOB_ID: id,
          MARINER_BASE_MODEL: spec.baseModel.id,
          MARINER_BASE_MODEL_URI: spec.baseModel.source,
          MARINER_TRAINING_FILE: trainingFile,
          MARINER_VALIDATION_FILE: validationFile,
          MARINER_OUTPUT_DIR: path.join(dir, 'output'),
          MARINER_METHOD: spec.method.type,
          MARINER_HYPERPARAMETERS: JSON.stringify(spec.method.hyperparameters),
          MARINER_SEED: String(spec.seed),
          MARINER_GPU_COUNT: String(spec.gpuCount),
        },
      });
      entry.child = child;
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
        child.once('error', (error) => resolve({ code: null, signal: null, error }));
        child.once('close', (code, signal) => resolve({ code, signal }));
      });
      await reporter.phase(id, { phase: 'RUNNING' });
      log.info({ pid: child.pid }, 'trainer started');
      createInterface({ input: child.stdout! }).on('line', line);
      createInterface({ input: child.stderr! }).on('line', line);
      const { code, signal, error } = await exited;
      if (entry.abandoned) return;
      if (entry.cancelled) return void (await reporter.phase(id, { phase: 'CANCELLED' }));
      if (error || code !== 0) {
        const why = error ? `the trainer could not start: ${error.message}` : `the trainer exited with ${signal ?? `code ${code}`}`;
        return void (await reporter.phase(id, { phase: 'FAILED', message: [why, ...tail].join('\n') }));
      }
      let stored = 0;
      for await (const file of filesUnder(path.join(dir, 'output'))) {
        const key = spec.outputPrefix + path.relative(path.join(dir, 'output'), file).split(path.sep).join('/');
        await store.put(key, createReadStream(file));
        stored++;
      }
      if (stored === 0) return void (await reporter.phase(id, { phase: 'FAILED', message: ['the trainer succeeded but wrote nothing to MARINER_OUTPUT_DIR', ...tail].join('\n') }));
      await reporter.phase(id, { phase: 'SUCCEEDED', outputPath: store.uri(spec.outputPrefix.replace(/\/+$/, '')), trainedTokens });
    } catch (error) {
      if (entry.abandoned) return;
      log.warn({ err: (error as Error).message }, 'job failed');
      await reporter.phase(id, { phase: 'FAILED', message: (error as Error).message });
    } finally {
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  return {
    async start(job: DispatchedJob) {
      const spec = job.spec as unknown as FineTuningSpec;
      if (spec.kind !== 'fine-tuning') throw new JobRefusedError(`the local executor runs fine-tuning jobs only, not ${spec.kind}`);
      if (!options.trainerCommand) {
        throw new JobRefusedError('this cluster runs the local executor without a trainer: set MARINER_LOCAL_TRAINER_COMMAND (or start with `mariner up --demo-model` for the demo trainer)');
      }
      if (!options.objectStore) throw new JobRefusedError("this agent has no access to the platform's object store, where the job's files are");
      const attempt = spec.attempt ?? 1;
      const existing = jobs.get(job.id);
      if (existing && existing.attempt === attempt) return 'running';
      reporter.resetOffset(job.id, spec.logOffset ?? 0);
      const entry: RunningJob = { attempt, child: undefined, cancelled: false, abandoned: false, done: Promise.resolve() };
      jobs.set(job.id, entry);
      entry.done = run(job.id, spec, entry).finally(() => {
        if (jobs.get(job.id) === entry) jobs.delete(job.id);
        void reporter.forget(job.id);
      });
      return 'started';
    },
    async cancel(jobId) {
      const entry = jobs.get(jobId);
      if (!entry) return false;
      entry.cancelled = true;
      const child = entry.child;
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
        timer.unref();
        child.once('close', () => clearTimeout(timer));
      }
      return true;
    },
    async has(job) {
      // Processes do not outlive the agent: after a restart there is nothing to find again.
      return jobs.has(job.id);
    },
    async close() {
      // The agent is going away: its trainers go with it (the control plane requeues the jobs
      // when the agent comes back without them).
      for (const entry of jobs.values()) {
        entry.abandoned = true;
        entry.child?.kill('SIGKILL');
      }
      await Promise.all([...jobs.values()].map((entry) => entry.done.catch(() => undefined)));
    },
  };
}
