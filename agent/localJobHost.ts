import { type ChildProcess, spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { pipeline } from 'node:stream/promises';
import type { Logger } from '../lib/logging.js';
import type { ObjectStore } from '../lib/objectStore/index.js';
import type { BatchSpec, FineTuningSpec, JobSpec } from '../lib/jobSpec.js';
import { JobRefusedError, type DispatchedJob, type JobHost } from './executor.js';
import { jobEnvironment } from './jobEnvironment.js';
import { trainedTokensOf, type JobReporter, type PhaseReport } from './jobReporter.js';

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

/** Signals a job's whole process group (spawned detached), falling back to the process alone. */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, signal);
  } catch {
    child.kill(signal);
  }
}

async function* filesUnder(dir: string): AsyncGenerator<string> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* filesUnder(full);
    else if (entry.isFile()) yield full;
  }
}

/**
 * Jobs as child processes on this machine (the local executor), each in a fresh work folder whose
 * output lines go to the control plane as they come. Fine-tuning: the training (and validation) file
 * is fetched from the platform's object store, the configured trainer runs with the job in its
 * environment, and on success everything it wrote to MARINER_OUTPUT_DIR is stored under the job's
 * output prefix (the trainer contract is in agent/README.md). Batch: scripts/ and data/ are written,
 * the command runs with /bin/sh (only where MARINER_LOCAL_BATCH_JOBS allows it).
 */
export function createLocalJobHost(options: {
  trainerCommand: string[] | undefined;
  /** Batch jobs' commands run on this machine: only where that is wanted (MARINER_LOCAL_BATCH_JOBS). */
  runBatchJobs: boolean;
  /** Given to batch jobs as OPENAI_BASE_URL (LLMariner batchjob.go). */
  openaiBaseUrl?: string | undefined;
  objectStore: ObjectStore | undefined;
  workDir: string;
  reporter: JobReporter;
  logger: Logger;
}): JobHost {
  const jobs = new Map<string, RunningJob>();
  const { reporter } = options;

  /** What a kind of job runs, in its work folder, and what success means for it. */
  interface Plan {
    argv: string[];
    env: Record<string, string>;
    /** Called after exit 0: the outcome to report. */
    succeeded(): Promise<PhaseReport>;
  }

  async function fetchInto(target: string, file: { objectKey: string }): Promise<void> {
    await pipeline(await options.objectStore!.get(file.objectKey), createWriteStream(target));
  }

  async function fineTuningPlan(id: string, spec: FineTuningSpec, dir: string, trainedTokens: () => number | null): Promise<Plan> {
    const store = options.objectStore!;
    await mkdir(path.join(dir, 'input'), { recursive: true });
    await mkdir(path.join(dir, 'output'), { recursive: true });
    const trainingFile = path.join(dir, 'input', localName(spec.trainingFile.filename, 'training.jsonl'));
    await fetchInto(trainingFile, spec.trainingFile);
    const validationFile = spec.validationFile ? path.join(dir, 'input', localName(spec.validationFile.filename, 'validation.jsonl')) : '';
    if (spec.validationFile) await fetchInto(validationFile, spec.validationFile);
    return {
      argv: options.trainerCommand!,
      env: {
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
      async succeeded() {
        let stored = 0;
        for await (const file of filesUnder(path.join(dir, 'output'))) {
          const key = spec.outputPrefix + path.relative(path.join(dir, 'output'), file).split(path.sep).join('/');
          await store.put(key, createReadStream(file));
          stored++;
        }
        if (stored === 0) return { phase: 'FAILED', message: 'the trainer succeeded but wrote nothing to MARINER_OUTPUT_DIR' };
        return { phase: 'SUCCEEDED', outputPath: store.uri(spec.outputPrefix.replace(/\/+$/, '')), trainedTokens: trainedTokens() };
      },
    };
  }

  /** A batch job (LLMariner §4b): its command in a folder with scripts/ and data/, its envs and the OpenAI endpoint. */
  async function batchPlan(id: string, spec: BatchSpec, dir: string): Promise<Plan> {
    await mkdir(path.join(dir, 'scripts'), { recursive: true });
    await mkdir(path.join(dir, 'data'), { recursive: true });
    for (const [name, content] of Object.entries(spec.scripts))
      await writeFile(path.join(dir, 'scripts', localName(name, 'script')), Buffer.from(content, 'base64'), { mode: 0o755 });
    for (const file of spec.dataFiles) await fetchInto(path.join(dir, 'data', localName(file.filename, file.id)), file);
    return {
      argv: ['/bin/sh', '-c', spec.command],
      env: {
        ...spec.envs,
        MARINER_JOB_ID: id,
        MARINER_GPU_COUNT: String(spec.gpuCount),
        ...(options.openaiBaseUrl ? { OPENAI_BASE_URL: options.openaiBaseUrl } : {}),
      },
      succeeded: async () => ({ phase: 'SUCCEEDED' }),
    };
  }

  async function run(id: string, spec: JobSpec, entry: RunningJob): Promise<void> {
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
    const what = spec.kind === 'batch' ? 'the command' : 'the trainer';
    try {
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true });
      if (spec.kind === 'notebook') throw new JobRefusedError('notebooks need a Kubernetes cluster');
      const plan = spec.kind === 'batch' ? await batchPlan(id, spec, dir) : await fineTuningPlan(id, spec, dir, () => trainedTokens);
      if (entry.cancelled) return void (await reporter.phase(id, { phase: 'CANCELLED' }));
      if (spec.kind === 'batch') line(`mariner: the local executor runs the command on this machine; the image ${spec.image} is not used`);
      const [command, ...args] = plan.argv;
      // Its own process group: stopping the job stops what its command started too (a shell's children).
      // None of the agent's secrets: only what a process needs to run, and the job's own variables.
      const child = spawn(command!, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: jobEnvironment(process.env, plan.env), detached: true });
      entry.child = child;
      // Read the output at once: a process that exits before anyone reads its pipes loses what it wrote.
      createInterface({ input: child.stdout! }).on('line', line);
      createInterface({ input: child.stderr! }).on('line', line);
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
        child.once('error', (error) => resolve({ code: null, signal: null, error }));
        child.once('close', (code, signal) => resolve({ code, signal }));
      });
      await reporter.phase(id, { phase: 'RUNNING' });
      log.info({ pid: child.pid }, 'job process started');
      const { code, signal, error } = await exited;
      if (entry.abandoned) return;
      if (entry.cancelled) return void (await reporter.phase(id, { phase: 'CANCELLED' }));
      if (error || code !== 0) {
        const why = error ? `${what} could not start: ${error.message}` : `${what} exited with ${signal ?? `code ${code}`}`;
        return void (await reporter.phase(id, { phase: 'FAILED', message: [why, ...tail].join('\n') }));
      }
      const outcome = await plan.succeeded();
      await reporter.phase(id, outcome.phase === 'FAILED' ? { ...outcome, message: [outcome.message, ...tail].join('\n') } : outcome);
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
      const spec = job.spec as unknown as JobSpec;
      if (spec.kind === 'fine-tuning' && !options.trainerCommand) {
        throw new JobRefusedError(
          'this cluster runs the local executor without a trainer: set MARINER_LOCAL_TRAINER_COMMAND (or start with `mariner up --demo-model` for the demo trainer)',
        );
      }
      if (spec.kind === 'batch' && !options.runBatchJobs) {
        throw new JobRefusedError(
          "this cluster's local executor does not run batch jobs: their commands would run on the platform's machine (set MARINER_LOCAL_BATCH_JOBS=true where every project member may do that)",
        );
      }
      if (spec.kind === 'notebook') throw new JobRefusedError('notebooks need a Kubernetes cluster: the local executor does not run Jupyter');
      if (spec.kind === 'batch' && spec.workerCount > 1)
        throw new JobRefusedError('the local executor runs one worker: multi-worker PyTorch jobs need a Kubernetes cluster');
      if (spec.kind !== 'batch' && spec.kind !== 'fine-tuning')
        throw new JobRefusedError(`the local executor does not run ${(spec as { kind: string }).kind} jobs`);
      const needsStore = spec.kind === 'fine-tuning' || spec.dataFiles.length > 0;
      if (needsStore && !options.objectStore) throw new JobRefusedError("this agent has no access to the platform's object store, where the job's files are");
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
        signalGroup(child, 'SIGTERM');
        const timer = setTimeout(() => signalGroup(child, 'SIGKILL'), STOP_GRACE_MS);
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
        if (entry.child) signalGroup(entry.child, 'SIGKILL');
      }
      await Promise.all([...jobs.values()].map((entry) => entry.done.catch(() => undefined)));
    },
  };
}
