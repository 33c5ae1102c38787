import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import type { Logger } from '../../lib/logging.js';
import { nodeCommand, siblingModule } from '../../lib/nodeScript.js';

/** A running inference runtime (llamaCppServer.ts) of one model, on loopback. */
export interface LocalRuntime {
  /** What the manager knows it by (a model id, or one replica of it). */
  key: string;
  /** The model id the runtime serves (`model` in requests). */
  modelId: string;
  /** `http://127.0.0.1:<port>`; the OpenAI API is under `/v1`. */
  url: string;
  pid: number;
  /** Requests the runtime is serving or queueing now (its /metrics). */
  inFlight(): Promise<number>;
  /** The LoRA adapters (model ids) the runtime has loaded on its model (its /metrics). */
  adapters(): Promise<string[]>;
  /** Unloads a LoRA adapter (POST /v1/unload_lora_adapter); false when it was not loaded. */
  unloadAdapter(id: string): Promise<boolean>;
}

export interface LocalRuntimeManagerOptions {
  logger: Logger;
  /** Sequences each runtime generates at once (`--parallel`, default 2). */
  parallel?: number;
  /** How long a runtime may take to load its model (default 120 s). */
  startTimeoutMs?: number;
  /** How long `stop` waits after SIGTERM before SIGKILL (default 15 s: the runtime drains for 10). */
  stopGraceMs?: number;
  /** CPU threads per runtime (`--threads`; default: the runtime's, all cores but one). */
  threads?: number;
  /** Tokens per sequence (`--context-size`; default: the runtime's). */
  contextSize?: number;
}

// llamaCppServer.js beside this module when compiled, llamaCppServer.ts through tsx from sources.
const [NODE, ...SERVER_ARGS] = nodeCommand(siblingModule(import.meta.url, 'llamaCppServer'));
// The transcription runtime (whisper.cpp), for Whisper models.
const [, ...WHISPER_ARGS] = nodeCommand(siblingModule(import.meta.url, 'whisperServer'));

/** Which runtime serves a model: node-llama-cpp (GGUF LLMs), or whisper.cpp (Whisper models, transcriptions). */
export type LocalRuntimeKind = 'llm' | 'whisper';

const STDERR_TAIL_BYTES = 4096;

interface Entry {
  runtime: LocalRuntime;
  child: ChildProcess;
  exited: Promise<void>;
  stderrTail(): string;
}

/**
 * The local executor's runtimes: one llamaCppServer child process per model, started on demand and
 * supervised. A runtime that dies is forgotten (its stderr tail logged) and the next `ensure` starts a
 * new one; concurrent `ensure` calls for one model share one start.
 */
export class LocalRuntimeManager {
  private readonly running = new Map<string, Entry>();
  private readonly starting = new Map<string, Promise<LocalRuntime>>();
  private readonly logger: Logger;
  private closed = false;

  constructor(private readonly options: LocalRuntimeManagerOptions) {
    this.logger = options.logger.child({ component: 'local-runtimes' });
  }

  /**
   * Starts (or returns the running) runtime `key` for a model file, serving it as `modelId`; resolves
   * when it is ready. Several runtimes of one model (replicas) have different keys.
   */
  ensure(key: string, modelPath: string, modelId = key, kind: LocalRuntimeKind = 'llm'): Promise<LocalRuntime> {
    if (this.closed) return Promise.reject(new Error('the runtime manager is closed'));
    const entry = this.running.get(key);
    if (entry) return Promise.resolve(entry.runtime);
    let pending = this.starting.get(key);
    if (!pending) {
      pending = this.start(key, path.resolve(modelPath), modelId, kind).finally(() => this.starting.delete(key));
      this.starting.set(key, pending);
    }
    return pending;
  }

  get(key: string): LocalRuntime | undefined {
    return this.running.get(key)?.runtime;
  }

  /** Whether runtime `key` is starting. */
  isStarting(key: string): boolean {
    return this.starting.has(key);
  }

  list(): LocalRuntime[] {
    return [...this.running.values()].map((entry) => entry.runtime);
  }

  /** SIGTERM (the runtime finishes what is in flight), then SIGKILL after the grace period. */
  async stop(key: string): Promise<void> {
    // A runtime still starting is stopped once it is up.
    const pending = this.starting.get(key);
    if (pending) await pending.catch(() => undefined);
    const entry = this.running.get(key);
    if (!entry) return;
    this.running.delete(key);
    this.logger.info({ runtime: key, pid: entry.runtime.pid }, 'stopping runtime');
    await terminate(entry.child, entry.exited, this.options.stopGraceMs ?? 15_000);
  }

  /** Stops every runtime. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...new Set([...this.running.keys(), ...this.starting.keys()])].map((key) => this.stop(key)));
  }

  private start(key: string, modelPath: string, modelId: string, kind: LocalRuntimeKind): Promise<LocalRuntime> {
    const server = kind === 'whisper' ? WHISPER_ARGS : SERVER_ARGS;
    const args = [...server, '--model', modelPath, '--model-id', modelId, '--host', '127.0.0.1', '--port', '0', '--exit-on-stdin-close'];
    if (this.options.parallel && kind === 'llm') args.push('--parallel', String(this.options.parallel));
    if (this.options.threads) args.push('--threads', String(this.options.threads));
    if (this.options.contextSize && kind === 'llm') args.push('--context-size', String(this.options.contextSize));
    // stdin is the runtime's lifeline: if this process dies, the pipe closes and the runtime exits.
    const child = spawn(NODE!, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const log = this.logger.child({ modelId, ...(key === modelId ? {} : { runtime: key }), pid: child.pid });
    log.info({ modelPath }, 'starting runtime');

    let tail = '';
    child.stderr!.setEncoding('utf8').on('data', (text: string) => {
      tail = (tail + text).slice(-STDERR_TAIL_BYTES);
    });
    const stderrTail = () => tail.trim();
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

    return new Promise<LocalRuntime>((resolve, reject) => {
      let ready = false;
      let stdout = '';
      const fail = (message: string) => {
        clearTimeout(timer);
        child.stdout!.off('data', onStdout);
        reject(new Error(`${message}${stderrTail() ? `: ${stderrTail().split('\n').slice(-5).join('\n')}` : ''}`));
      };
      const timer = setTimeout(() => {
        fail(`the runtime of ${modelId} was not ready within ${this.options.startTimeoutMs ?? 120_000} ms`);
        void terminate(child, exited, 1000);
      }, this.options.startTimeoutMs ?? 120_000);
      const onStdout = (text: string) => {
        stdout += text;
        for (let newline = stdout.indexOf('\n'); newline >= 0 && !ready; newline = stdout.indexOf('\n')) {
          const line = stdout.slice(0, newline);
          stdout = stdout.slice(newline + 1);
          let message: { ready?: unknown; port?: unknown };
          try {
            message = JSON.parse(line) as typeof message;
          } catch {
            continue;
          }
          if (message.ready !== true || typeof message.port !== 'number') continue;
          ready = true;
          clearTimeout(timer);
          child.stdout!.off('data', onStdout).resume();
          const runtime = this.runtime(key, modelId, `http://127.0.0.1:${message.port}`, child.pid!);
          if (this.closed) {
            return void terminate(child, exited, 1000).then(() => reject(new Error('the runtime manager was closed while the runtime started')));
          }
          this.running.set(key, { runtime, child, exited, stderrTail });
          log.info({ url: runtime.url }, 'runtime ready');
          resolve(runtime);
        }
      };
      child.stdout!.setEncoding('utf8').on('data', onStdout);
      child.stdin!.on('error', () => undefined);
      child.once('error', (error) => fail(`the runtime of ${modelId} could not start: ${error.message}`));
      child.once('exit', (code, signal) => {
        if (!ready) return fail(`the runtime of ${modelId} exited (${signal ?? `code ${code}`}) before it was ready`);
        // A runtime that stop() ended is no longer in the map; any other exit is a crash.
        const entry = this.running.get(key);
        if (entry?.child === child) {
          this.running.delete(key);
          log.error({ code, signal, stderr: stderrTail() }, 'runtime exited unexpectedly; the next request starts a new one');
        }
      });
    });
  }

  private runtime(key: string, modelId: string, url: string, pid: number): LocalRuntime {
    const metrics = async () => {
      const response = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) });
      if (!response.ok) throw new Error(`runtime metrics answered ${response.status}`);
      return (await response.json()) as { inFlight: number; adapters?: string[] };
    };
    return {
      key,
      modelId,
      url,
      pid,
      inFlight: async () => (await metrics()).inFlight,
      adapters: async () => (await metrics()).adapters ?? [],
      unloadAdapter: async (id) => {
        const response = await fetch(`${url}/v1/unload_lora_adapter`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ lora_name: id }),
          signal: AbortSignal.timeout(5000),
        });
        if (response.status === 404) return false;
        if (!response.ok) throw new Error(`the runtime answered ${response.status} to unloading ${id}`);
        return true;
      },
    };
  }
}

/** SIGTERM, then SIGKILL if the process has not exited after `graceMs`. */
async function terminate(child: ChildProcess, exited: Promise<void>, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const killed = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve();
    }, graceMs);
  });
  await Promise.race([exited, killed]);
  clearTimeout(timer);
  await exited;
}
