import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Logger } from '../lib/logging.js';
import type { ObjectStore } from '../lib/objectStore/index.js';
import type { ActiveModel, RuntimeHost, RuntimeReport } from './executor.js';
import { answerRuntimeError, forwardToRuntime } from './forwardToRuntime.js';
import { LocalRuntimeManager } from './runtimes/localRuntimes.js';

/**
 * Inference runtimes on this machine (the local executor): one node-llama-cpp process per active GGUF
 * model, its weights copied once from the object store into a cache directory. Models of other
 * layouts are reported as not runnable here.
 */
export function createLocalRuntimeHost(options: { objectStore: ObjectStore; cacheDir: string; logger: Logger; parallel?: number }): RuntimeHost {
  const { objectStore, logger } = options;
  const manager = new LocalRuntimeManager({ logger, ...(options.parallel ? { parallel: options.parallel } : {}) });
  const problems = new Map<string, string>();
  const wanted = new Map<string, ActiveModel>();
  const starting = new Map<string, Promise<void>>();
  mkdirSync(options.cacheDir, { recursive: true });

  /** The local path of a model's GGUF weights, fetched from the store on first use. */
  async function weightsOf(model: ActiveModel): Promise<string> {
    const key = objectStore.keyFromUri(model.source);
    if (!key) throw new Error(`${model.source} is not in this platform's object store`);
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
    if (!ggufKey) throw new Error('the local executor runs GGUF models only (no .gguf file in the model)');
    const file = path.join(options.cacheDir, `${createHash('sha256').update(ggufKey).digest('hex').slice(0, 32)}.gguf`);
    if (existsSync(file)) return file;
    const partial = `${file}.${randomUUID()}.partial`;
    try {
      await pipeline(await objectStore.get(ggufKey), createWriteStream(partial));
      renameSync(partial, file);
    } finally {
      rmSync(partial, { force: true });
    }
    return file;
  }

  async function start(model: ActiveModel): Promise<void> {
    try {
      await manager.ensure(model.id, await weightsOf(model));
      problems.delete(model.id);
    } catch (error) {
      problems.set(model.id, (error as Error).message);
      logger.warn({ modelId: model.id, err: (error as Error).message }, 'runtime did not start');
    }
  }

  return {
    async reconcile(models) {
      wanted.clear();
      for (const model of models) wanted.set(model.id, model);
      for (const runtime of manager.list()) {
        if (!wanted.has(runtime.modelId)) {
          logger.info({ modelId: runtime.modelId }, 'model no longer active: stopping its runtime');
          await manager.stop(runtime.modelId);
        }
      }
      for (const id of [...problems.keys()]) if (!wanted.has(id)) problems.delete(id);
      await Promise.all(
        models
          .filter((m) => !manager.get(m.id))
          .map((m) => {
            let pending = starting.get(m.id);
            if (!pending) {
              pending = start(m).finally(() => starting.delete(m.id));
              starting.set(m.id, pending);
            }
            return pending;
          }),
      );
    },
    async status(): Promise<RuntimeReport[]> {
      return Promise.all(
        [...wanted.keys()].map(async (modelId) => {
          const runtime = manager.get(modelId);
          const inFlight = runtime ? await runtime.inFlight().catch(() => 0) : 0;
          return {
            modelId,
            desiredReplicas: 1,
            readyReplicas: runtime ? 1 : 0,
            inFlightRequests: inFlight,
            statusMessage: runtime ? `running (pid ${runtime.pid})` : (problems.get(modelId) ?? (starting.has(modelId) ? 'starting' : 'not running')),
          };
        }),
      );
    },
    forward(modelId: string, req: Http2ServerRequest, res: Http2ServerResponse, runtimePath: string) {
      const runtime = manager.get(modelId);
      if (!runtime) return answerRuntimeError(res, 503, `model ${modelId} has no runtime on this cluster`);
      forwardToRuntime({ baseUrl: runtime.url, modelId, req, res, runtimePath });
    },
    close: () => manager.close(),
  };
}
