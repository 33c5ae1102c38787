import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Logger } from '../lib/logging.js';
import { ADAPTER_MODEL_HEADER, ADAPTER_PATH_HEADER, ADAPTER_SOURCE_HEADER } from '../lib/loraAdapters.js';
import { PrefixHashRing, prefixHashSettings, routingKeyOf } from '../lib/prefixHashRing.js';
import { InFlightCounts } from '../lib/requestTracker.js';
import type { ObjectStore } from '../lib/objectStore/index.js';
import { RuntimeRefusedError, type ActiveModel, type RuntimeHost, type RuntimeReport } from './executor.js';
import { answerRuntimeError, forwardToRuntime } from './forwardToRuntime.js';
import { LocalRuntimeManager, type LocalRuntime, type LocalRuntimeKind } from './runtimes/localRuntimes.js';

/** Whisper models (whisper.cpp's ggml format) run on the transcription runtime; the others on node-llama-cpp. */
const kindOf = (model: ActiveModel): LocalRuntimeKind => (model.formats.includes('WHISPER_GGML') ? 'whisper' : 'llm');

/** The manager's key of a model's replica `index`. */
const replicaKey = (modelId: string, index: number) => `${index}/${modelId}`;
const replicaIndex = (key: string) => Number(key.slice(0, key.indexOf('/')));

/** What a refusal is about: the model as it was given (another source or layout is tried again). */
const specOf = (model: ActiveModel) => JSON.stringify([model.source, model.formats]);

/**
 * Inference runtimes on this machine (the local executor): per active GGUF model, one node-llama-cpp
 * process per replica (the model's replicas, or what the autoscaler decides), its weights copied once
 * from the object store into a cache directory. Requests go to the replica with the fewest in
 * flight, or with the model's `loadBalancing` PREFIX_HASH to the replica its prompt prefix hashes to
 * (bounded by load: lib/prefixHashRing.ts), whose KV cache may hold that prefix already; a replica scaled away drains what it serves before it exits. A Whisper model (format
 * WHISPER_GGML: whisper.cpp's ggml file) runs the same way on the transcription runtime
 * (runtimes/whisperServer.ts). Models of other layouts are refused: reported with their reason as
 * `failure` (the control plane answers their requests with it at once), logged once, and not tried
 * again until the model's source or formats change. A start that fails otherwise is tried again at each
 * reconciliation, and logged when its reason changes.
 */
export function createLocalRuntimeHost(options: { objectStore: ObjectStore; cacheDir: string; logger: Logger; parallel?: number }): RuntimeHost {
  const { objectStore, logger } = options;
  const manager = new LocalRuntimeManager({ logger, ...(options.parallel ? { parallel: options.parallel } : {}) });
  const problems = new Map<string, string>();
  /** Models this host cannot run (RuntimeRefusedError), with the model's spec the refusal was about. */
  const refused = new Map<string, { spec: string; reason: string }>();
  const wanted = new Map<string, ActiveModel>();
  const weights = new Map<string, Promise<string>>();
  const starting = new Map<string, Promise<void>>();
  /** Requests this host has open to each replica (by key). */
  const inFlight = new InFlightCounts();
  mkdirSync(options.cacheDir, { recursive: true });

  /** The local path of a model's GGUF weights (or Whisper ggml file), fetched from the store on first use. */
  async function fetchWeights(model: ActiveModel): Promise<string> {
    const key = objectStore.keyFromUri(model.source);
    if (!key) throw new RuntimeRefusedError(`${model.source} is not in this platform's object store`);
    if (kindOf(model) === 'whisper') return cached(await whisperKey(key), '.bin');
    // A single GGUF object (a File's key has no extension: the model's formats say what it is), or
    // the first .gguf of a folder.
    let ggufKey = key.toLowerCase().endsWith('.gguf') || (model.formats.includes('GGUF') && (await objectStore.head(key))) ? key : undefined;
    if (!ggufKey) {
      for await (const object of objectStore.list(key.endsWith('/') ? key : `${key}/`)) {
        if (object.key.toLowerCase().endsWith('.gguf')) {
          ggufKey = object.key;
          break;
        }
      }
    }
    if (!ggufKey) throw new RuntimeRefusedError('the local executor runs GGUF models only (no .gguf file in the model)');
    return cached(ggufKey, '.gguf');
  }

  /** A Whisper model's ggml file: the object itself, or the first .bin of a folder. */
  async function whisperKey(key: string): Promise<string> {
    if (await objectStore.head(key)) return key;
    for await (const object of objectStore.list(key.endsWith('/') ? key : `${key}/`)) if (object.key.toLowerCase().endsWith('.bin')) return object.key;
    throw new RuntimeRefusedError('no Whisper ggml (.bin) file in the model');
  }

  /** The object's copy in the cache directory (copied once). */
  async function cached(objectKey: string, extension: string): Promise<string> {
    const file = path.join(options.cacheDir, `${createHash('sha256').update(objectKey).digest('hex').slice(0, 32)}${extension}`);
    if (existsSync(file)) return file;
    const partial = `${file}.${randomUUID()}.partial`;
    try {
      await pipeline(await objectStore.get(objectKey), createWriteStream(partial));
      renameSync(partial, file);
    } finally {
      rmSync(partial, { force: true });
    }
    return file;
  }

  /** A LoRA adapter's GGUF file (the object, or the first .gguf of a job's output folder), fetched once. */
  const adapterFiles = new Map<string, Promise<string>>();
  function adapterFile(source: string): Promise<string> {
    let pending = adapterFiles.get(source);
    if (!pending) {
      pending = (async () => {
        const key = objectStore.keyFromUri(source);
        if (!key) throw new Error(`${source} is not in this platform's object store`);
        if (key.toLowerCase().endsWith('.gguf')) return cached(key, '.gguf');
        for await (const object of objectStore.list(key.endsWith('/') ? key : `${key}/`)) {
          if (object.key.toLowerCase().endsWith('.gguf')) return cached(object.key, '.gguf');
        }
        throw new Error('the adapter has no GGUF file: the local executor serves GGUF LoRA adapters only');
      })();
      adapterFiles.set(source, pending);
      pending.catch(() => adapterFiles.delete(source));
    }
    return pending;
  }

  /** One fetch per model for its replicas starting together; a failed fetch is tried again next time. */
  function weightsOf(model: ActiveModel): Promise<string> {
    let pending = weights.get(model.id);
    if (!pending) {
      pending = fetchWeights(model);
      weights.set(model.id, pending);
      pending.catch(() => weights.delete(model.id));
    }
    return pending;
  }

  async function start(model: ActiveModel, key: string): Promise<void> {
    try {
      await manager.ensure(key, await weightsOf(model), model.id, kindOf(model));
      problems.delete(model.id);
    } catch (error) {
      const reason = (error as Error).message;
      if (error instanceof RuntimeRefusedError) {
        // Once per model as given: the replicas refused with it, and the reconciliations after, say nothing.
        if (refused.get(model.id)?.reason !== reason)
          logger.warn({ modelId: model.id, reason }, 'this cluster cannot run the model; its requests are refused with the reason');
        refused.set(model.id, { spec: specOf(model), reason });
        return;
      }
      if (problems.get(model.id) !== reason)
        logger.warn({ modelId: model.id, runtime: key, err: reason }, 'runtime did not start; retrying at each reconciliation');
      else logger.debug({ modelId: model.id, runtime: key, err: reason }, 'runtime did not start again');
      problems.set(model.id, reason);
    }
  }

  /** The refusal that still holds for the model as given (null: try it). */
  const refusalOf = (model: ActiveModel) => {
    const refusal = refused.get(model.id);
    return refusal && refusal.spec === specOf(model) ? refusal.reason : null;
  };

  /** The running replicas of a model. */
  const replicasOf = (modelId: string) => manager.list().filter((runtime) => runtime.modelId === modelId);

  /**
   * The LoRA adapters each replica (by key) holds, as last read from it (each status report) or sent to
   * it since: where an adapter's requests go. A replica may have unloaded one since (its own cap): it
   * then loads it again.
   */
  const heldAdapters = new Map<string, Set<string>>();
  const heldBy = (key: string) => heldAdapters.get(key) ?? new Set<string>();
  const sequences = options.parallel ?? 2;

  /**
   * The replica an adapter's request goes to: the least busy of those holding the adapter; when none
   * does, the one holding the fewest adapters (then the least busy), which loads it, so that adapters
   * spread over the replicas instead of every replica loading every adapter. A holder whose sequences are
   * all busy while another replica idles: the idle one loads the adapter too.
   */
  function replicaForAdapter(replicas: LocalRuntime[], adapter: string): LocalRuntime | undefined {
    const busy = (r: LocalRuntime) => inFlight.get(r.key);
    const holder = replicas.filter((r) => heldBy(r.key).has(adapter)).sort((a, b) => busy(a) - busy(b))[0];
    const others = replicas.filter((r) => !heldBy(r.key).has(adapter)).sort((a, b) => heldBy(a.key).size - heldBy(b.key).size || busy(a) - busy(b));
    if (holder && (busy(holder) < sequences || !others.some((r) => busy(r) === 0))) return holder;
    const chosen = (holder ? others.filter((r) => busy(r) === 0) : others)[0];
    if (chosen) heldAdapters.set(chosen.key, new Set([...heldBy(chosen.key), adapter]));
    return chosen;
  }

  /** The hash ring of each model's replicas (PREFIX_HASH), rebuilt when its replicas change. */
  const rings = new Map<string, PrefixHashRing>();
  function ringOf(modelId: string, replicas: LocalRuntime[]): PrefixHashRing {
    const names = replicas.map((r) => r.key).sort();
    let ring = rings.get(modelId);
    if (!ring || ring.replicas.join('\n') !== names.join('\n')) {
      ring = new PrefixHashRing(names);
      rings.set(modelId, ring);
    }
    return ring;
  }

  /**
   * PREFIX_HASH (lib/prefixHashRing.ts): reads the request's body (a JSON request of the control plane,
   * already size-capped there) for its routing key and picks the replica on the ring, so that requests
   * sharing a prompt prefix reuse the KV cache of one node-llama-cpp process; a body without a key (or
   * not JSON) goes to the least busy. Then forwards the body read.
   */
  function forwardByPrefix(model: ActiveModel, replicas: LocalRuntime[], req: Http2ServerRequest, res: Http2ServerResponse, runtimePath: string) {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.once('error', () => answerRuntimeError(res, 502, 'the request could not be read'));
    req.once('end', () => {
      const body = Buffer.concat(chunks);
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.toString('utf8'));
      } catch {
        parsed = undefined;
      }
      const key = routingKeyOf(parsed, model.prefixHashChars ?? prefixHashSettings().prefixChars);
      const busy = (key: string) => inFlight.get(key);
      const chosen = key === undefined ? undefined : ringOf(model.id, replicas).pick(key, busy);
      const runtime = replicas.find((r) => r.key === chosen) ?? replicas.sort((a, b) => busy(a.key) - busy(b.key))[0]!;
      inFlight.track(runtime.key, res.stream);
      // The request's headers, with the body already read sent as it was.
      forwardToRuntime({ baseUrl: runtime.url, modelId: model.id, req, res, runtimePath, body, extraHeaders: { [ADAPTER_PATH_HEADER]: '' } });
    });
  }

  /**
   * Unloads from the running replicas the LoRA adapters no longer served (their fine-tuned model was
   * deleted or deactivated, or the cluster may no longer serve it): the control plane lists each active
   * model's adapters. A runtime that does not answer is left for the next reconciliation.
   */
  async function unloadGoneAdapters(): Promise<void> {
    await Promise.all(
      manager.list().map(async (runtime) => {
        const served = wanted.get(runtime.modelId)?.loraAdapters;
        if (!served) return;
        try {
          for (const id of await runtime.adapters()) {
            if (served.includes(id)) continue;
            heldAdapters.get(runtime.key)?.delete(id);
            if (await runtime.unloadAdapter(id))
              logger.info({ modelId: runtime.modelId, adapter: id, runtime: runtime.key }, 'LoRA adapter no longer served: unloaded');
          }
        } catch (error) {
          logger.debug({ runtime: runtime.key, err: (error as Error).message }, 'LoRA adapters not checked; next reconciliation');
        }
      }),
    );
  }

  /**
   * The LoRA adapters the replicas hold (read from each, which refreshes `heldAdapters`): their ids, or
   * with several replicas each one's (`pid 12: ft:a; pid 13: ft:b`); '' when none holds any.
   */
  async function adaptersText(replicas: LocalRuntime[]): Promise<string> {
    const held = await Promise.all(
      replicas.map(async (runtime) => {
        const ids = (await runtime.adapters().catch(() => [...heldBy(runtime.key)])).sort();
        heldAdapters.set(runtime.key, new Set(ids));
        return { pid: runtime.pid, ids };
      }),
    );
    if (held.length <= 1) return held[0]?.ids.join(', ') ?? '';
    return held
      .filter((replica) => replica.ids.length > 0)
      .map((replica) => `pid ${replica.pid}: ${replica.ids.join(', ')}`)
      .join('; ');
  }

  return {
    async reconcile(models) {
      wanted.clear();
      for (const model of models) wanted.set(model.id, model);
      // Replicas of models no longer active, and those above a model's count, drain and stop.
      const stopping = manager
        .list()
        .filter((runtime) => {
          const model = wanted.get(runtime.modelId);
          return !model || replicaIndex(runtime.key) >= model.replicas;
        })
        .map((runtime) => {
          logger.info(
            { modelId: runtime.modelId, runtime: runtime.key },
            wanted.has(runtime.modelId) ? 'scaled down: stopping a replica' : 'model no longer active: stopping its runtime',
          );
          return manager.stop(runtime.key);
        });
      for (const id of [...problems.keys()]) if (!wanted.has(id)) problems.delete(id);
      for (const [id, refusal] of [...refused]) {
        const model = wanted.get(id);
        if (!model || refusal.spec !== specOf(model)) refused.delete(id);
      }
      for (const id of [...weights.keys()]) if (!wanted.has(id)) weights.delete(id);
      for (const id of [...rings.keys()]) if (!wanted.has(id)) rings.delete(id);
      const starts = models
        .filter((model) => refusalOf(model) === null)
        .flatMap((model) =>
          Array.from({ length: model.replicas }, (_, index) => replicaKey(model.id, index))
            .filter((key) => !manager.get(key))
            .map((key) => {
              let pending = starting.get(key);
              if (!pending) {
                pending = start(model, key).finally(() => starting.delete(key));
                starting.set(key, pending);
              }
              return pending;
            }),
        );
      await Promise.all([...stopping, ...starts, unloadGoneAdapters()]);
      for (const key of [...heldAdapters.keys()]) if (!manager.get(key)) heldAdapters.delete(key);
    },
    async status(): Promise<RuntimeReport[]> {
      return Promise.all(
        [...wanted.values()].map(async (model) => {
          const replicas = replicasOf(model.id).filter((runtime) => replicaIndex(runtime.key) < model.replicas);
          const inFlightNow = (await Promise.all(replicas.map((runtime) => runtime.inFlight().catch(() => 0)))).reduce((sum, n) => sum + n, 0);
          const pids = replicas.map((runtime) => runtime.pid).join(', ');
          const startingNow = [...starting.keys()].some((key) => key.endsWith(`/${model.id}`));
          const refusal = refusalOf(model);
          if (refusal !== null && replicas.length === 0) {
            return {
              modelId: model.id,
              desiredReplicas: model.replicas,
              readyReplicas: 0,
              inFlightRequests: 0,
              statusMessage: `cannot run here: ${refusal}`,
              failure: refusal,
            };
          }
          let statusMessage: string;
          const adapters = await adaptersText(replicas);
          if (model.replicas === 0) statusMessage = 'scaled to zero';
          else if (replicas.length === model.replicas) statusMessage = `running (pid ${pids})${adapters ? `; LoRA adapters loaded: ${adapters}` : ''}`;
          else statusMessage = problems.get(model.id) ?? (startingNow ? `starting (${replicas.length}/${model.replicas} ready)` : 'not running');
          return { modelId: model.id, desiredReplicas: model.replicas, readyReplicas: replicas.length, inFlightRequests: inFlightNow, statusMessage };
        }),
      );
    },
    async currentReplicas() {
      const counts = new Map<string, number>();
      for (const runtime of manager.list()) counts.set(runtime.modelId, (counts.get(runtime.modelId) ?? 0) + 1);
      return counts;
    },
    forward(modelId: string, req: Http2ServerRequest, res: Http2ServerResponse, runtimePath: string) {
      const model = wanted.get(modelId);
      const replicas = replicasOf(modelId).filter((replica) => !model || replicaIndex(replica.key) < model.replicas);
      // A fine-tuned model served as a LoRA adapter of this base: the runtime loads the adapter's file
      // (fetched here once) on first use. The runtime only ever reads a path this host set.
      const adapter = req.headers[ADAPTER_MODEL_HEADER];
      const source = req.headers[ADAPTER_SOURCE_HEADER];
      // Adapters' requests keep their adapter-aware choice (where the adapter is loaded comes first).
      if (model?.loadBalancing === 'PREFIX_HASH' && replicas.length > 1 && typeof adapter !== 'string')
        return forwardByPrefix(model, replicas, req, res, runtimePath);
      const runtime =
        typeof adapter === 'string' && typeof source === 'string'
          ? replicaForAdapter(replicas, adapter)
          : replicas.sort((a, b) => inFlight.get(a.key) - inFlight.get(b.key))[0];
      if (!runtime) return answerRuntimeError(res, 503, `model ${modelId} has no runtime on this cluster`);
      inFlight.track(runtime.key, res.stream);
      if (typeof adapter !== 'string' || typeof source !== 'string') {
        return forwardToRuntime({ baseUrl: runtime.url, modelId, req, res, runtimePath, extraHeaders: { [ADAPTER_PATH_HEADER]: '' } });
      }
      adapterFile(source).then(
        (file) => forwardToRuntime({ baseUrl: runtime.url, modelId, req, res, runtimePath, extraHeaders: { [ADAPTER_PATH_HEADER]: file } }),
        (error: Error) => {
          logger.warn({ modelId, adapter, err: error.message }, 'LoRA adapter could not be fetched');
          answerRuntimeError(res, 502, `the LoRA adapter of ${adapter} could not be fetched: ${error.message}`);
        },
      );
    },
    close: () => manager.close(),
  };
}
