import { createHash, type Hash } from 'node:crypto';
import { ErrorCode, MarinerError } from '../lib/errors.js';
import { graphqlRequest } from '../lib/graphqlClient.js';
import type { Logger } from '../lib/logging.js';
import { ObjectTooLargeError, validateObjectKey, type ObjectStore } from '../lib/objectStore/index.js';
import { isWhisperGgmlName } from '../lib/transcription.js';

/**
 * The agent's model loader (LLMariner model-manager-loader, reference §2): claims base models waiting
 * to be loaded (`acquireModelLoad`), puts their weights in the platform's object store, and reports
 * progress (renewing the lease), success or failure (`reportModelLoading`).
 *
 * - OBJECT_STORE / FILE: the model is already in the store; it is checked and used as is.
 * - HUGGING_FACE: every file of the repository is streamed from the Hub into the model's destination;
 *   SUCCEEDED only once all are stored, and a failed load removes what it stored.
 * - OLLAMA: the model (`name` or `name:tag`, tag `latest` by default) is pulled from the Ollama
 *   library's registry as `ollama pull` does: its manifest, then each layer's blob, checked against its
 *   sha256 digest, into the model's destination. Its model layer is a GGUF file: the model is that file
 *   (formats GGUF), served by the GGUF runtimes; its template, params and license are stored beside it.
 */
export interface ModelLoaderOptions {
  /** The control plane's GraphQL endpoint (`<controlPlaneUrl>/graphql`). */
  graphqlUrl: string;
  /** The cluster's registration key: the loader API is for registration keys only. */
  registrationKey: string;
  /** The platform's object store (the control plane's configuration). */
  objectStore: ObjectStore;
  logger: Logger;
  /** The Hugging Face Hub (`HF_ENDPOINT`, default https://huggingface.co) and an access token (`HF_TOKEN`) for gated and private repositories. */
  huggingFace?: { endpoint: string; token?: string | undefined } | undefined;
  /** The Ollama registry models of the OLLAMA source are pulled from (default https://registry.ollama.ai). */
  ollama?: { registry: string } | undefined;
  /** How often to look for models to load (default 10 s). 0: never on its own; loads happen through `loadOnce()` only. */
  pollIntervalMs?: number | undefined;
  /** Models loaded at once (default 1). */
  concurrency?: number | undefined;
}

export interface ModelLoader {
  /**
   * Stops polling and aborts the loads in progress without reporting: their leases lapse and another
   * loader retries. It waits for an acquire already sent (a model it claims is left to lapse too), so
   * once it returns, this loader claims nothing more.
   */
  close(): Promise<void>;
  /** Acquires one model and loads it (whatever the outcome); the model's id, or null when none was waiting. For tests. */
  loadOnce(): Promise<string | null>;
}

type ModelFormat = 'GGUF' | 'HUGGING_FACE' | 'NVIDIA_TRITON' | 'OLLAMA' | 'WHISPER_GGML';

/** What `acquireModelLoad` hands out (schema/models.graphql ModelLoadTask). */
interface ModelLoadTask {
  modelId: string;
  sourceRepository: string;
  source: string;
  formats: ModelFormat[];
  /** An object-store URI prefix ending in `/`. */
  destination: string;
  leaseExpiresAt: string | null;
}

interface LoadReport {
  status: 'LOADING' | 'SUCCEEDED' | 'FAILED';
  message?: string;
  formats?: ModelFormat[];
  objectPath?: string;
}

/** What a load ends with when it succeeds. */
interface LoadedModel {
  objectPath: string;
  formats: ModelFormat[];
  message: string;
}

const TASK_FIELDS = 'modelId sourceRepository source formats destination leaseExpiresAt';
const ACQUIRE = `mutation LoaderAcquire { acquireModelLoad { ${TASK_FIELDS} } }`;
const REPORT = `mutation LoaderReport($input: ReportModelLoadingInput!) { reportModelLoading(input: $input) { leaseExpiresAt } }`;

const DEFAULT_HUB = 'https://huggingface.co';
const DEFAULT_OLLAMA_REGISTRY = 'https://registry.ollama.ai';
/** LOADING reports go out every third of the lease (so two can be lost), within these bounds. */
const RENEW_MIN_MS = 250;
const RENEW_MAX_MS = 30_000;
/** Attempts per file download and per final report, for failures that may pass (network, 5xx, 429). */
const ATTEMPTS = 3;
const RETRY_DELAYS_MS = [1_000, 3_000];
/** The control plane takes at most 2,000 printable characters in a report's message. */
const MAX_MESSAGE = 2_000;
/** A Hub repository reference, as the control plane accepts it (org/name). */
const HF_REPO = /^[A-Za-z0-9][\w.-]{0,95}\/[A-Za-z0-9][\w.-]{0,95}$/;
const COMMIT_SHA = /^[0-9a-f]{40}$/;
/** A final report refused with these may go through later (UNAVAILABLE: newer control planes). */
const PASSING_REPORT_CODES = new Set<string>([ErrorCode.INTERNAL, ErrorCode.RATE_LIMITED, 'UNAVAILABLE']);
/** A LOADING report refused with these: the load is not this cluster's any more (or its key was revoked). */
const LOST_LOAD_CODES = new Set<string>([ErrorCode.FAILED_PRECONDITION, ErrorCode.NOT_FOUND, ErrorCode.UNAUTHENTICATED]);

/** The reason a model cannot be loaded, as the user reads it (the FAILED report's message). */
class LoadFailure extends Error {}

/** This cluster no longer holds the load (the lease went to another loader, or the model was deleted): stop, report nothing. */
class LoadLost extends Error {
  constructor(
    message: string,
    /** Whether what the load stored is ours to remove (the model is gone), rather than the new holder's. */
    readonly removeStored: boolean,
  ) {
    super(message);
  }
}

interface LoaderSettings {
  graphqlUrl: string;
  headers: Record<string, string>;
  objectStore: ObjectStore;
  logger: Logger;
  hub: HuggingFaceHub;
  ollamaRegistry: string;
  pollIntervalMs: number;
  concurrency: number;
}

/** The option defaults, in one place. */
function loaderSettings(options: ModelLoaderOptions): LoaderSettings {
  return {
    graphqlUrl: options.graphqlUrl,
    headers: { authorization: `Bearer ${options.registrationKey}` },
    objectStore: options.objectStore,
    logger: options.logger.child({ component: 'model-loader' }),
    hub: new HuggingFaceHub(options.huggingFace?.endpoint || DEFAULT_HUB, options.huggingFace?.token || undefined),
    ollamaRegistry: (options.ollama?.registry || DEFAULT_OLLAMA_REGISTRY).replace(/\/+$/, ''),
    pollIntervalMs: Math.max(0, options.pollIntervalMs ?? 10_000),
    concurrency: Math.max(1, Math.floor(options.concurrency ?? 1)),
  };
}

/** The longest an acquire may take (and so the longest `close` waits for one). */
const ACQUIRE_TIMEOUT_MS = 15_000;

export function startModelLoader(options: ModelLoaderOptions): ModelLoader {
  const settings = loaderSettings(options);
  const { logger } = settings;
  const closing = new AbortController();
  const inFlight = new Set<Promise<void>>();
  let filling: Promise<void> | null = null;

  // Not cut by `close`: an acquire the control plane has received claims a model whether or not this
  // side still listens, so `close` waits for its answer instead (bounded), and once `close` returns this
  // loader claims nothing more.
  const acquire = async (): Promise<ModelLoadTask | null> =>
    (
      await graphqlRequest<{ acquireModelLoad: ModelLoadTask | null }>(
        settings.graphqlUrl,
        ACQUIRE,
        {},
        settings.headers,
        AbortSignal.timeout(ACQUIRE_TIMEOUT_MS),
      )
    ).acquireModelLoad;

  function run(task: ModelLoadTask): Promise<void> {
    const load = loadModel(settings, task, closing.signal)
      .catch((error: Error) => logger.error({ model: task.modelId, err: error.message }, 'model load crashed; its lease will lapse'))
      .finally(() => inFlight.delete(load));
    inFlight.add(load);
    return load;
  }

  // Acquires until nothing is waiting or every slot is busy; a finished load polls again at once.
  async function fill(): Promise<void> {
    while (!closing.signal.aborted && inFlight.size < settings.concurrency) {
      const task = await acquire();
      if (!task) return;
      // Closed while acquiring: the load is left to lapse, as any other interrupted load.
      if (closing.signal.aborted) return;
      void run(task).then(poll);
    }
  }
  function poll(): void {
    if (closing.signal.aborted || filling) return;
    filling = fill()
      .catch((error: Error) => {
        if (!closing.signal.aborted) logger.warn({ err: error.message }, 'could not acquire a model to load; retrying on the next tick');
      })
      .finally(() => (filling = null));
  }

  let timer: NodeJS.Timeout | undefined;
  if (settings.pollIntervalMs > 0) {
    timer = setInterval(poll, settings.pollIntervalMs);
    timer.unref();
    poll();
  }

  return {
    async loadOnce() {
      if (closing.signal.aborted) return null;
      const task = await acquire();
      if (!task) return null;
      await run(task);
      return task.modelId;
    },
    async close() {
      if (closing.signal.aborted) return;
      clearInterval(timer);
      closing.abort();
      await Promise.allSettled([filling, ...inFlight]);
    },
  };
}

/**
 * One load from acquire to its outcome. Never throws: outcomes are reported, interruptions logged.
 * What a failed or interrupted Hugging Face download stored is removed: a half-downloaded model never
 * stays under its destination. A SUCCEEDED report that may have been recorded is never undone.
 */
async function loadModel(settings: LoaderSettings, task: ModelLoadTask, closing: AbortSignal): Promise<void> {
  const logger = settings.logger.child({ model: task.modelId, sourceRepository: task.sourceRepository });
  const load = new ModelLoad(settings, task, closing, logger);
  const destination = settings.objectStore.keyFromUri(task.destination.replace(/\/+$/, ''));
  const removeDownloaded = async () => {
    if (destination && (task.sourceRepository === 'HUGGING_FACE' || task.sourceRepository === 'OLLAMA')) await removeStored(settings, destination, logger);
  };
  logger.info({ source: task.source }, 'loading model');

  let loaded: LoadedModel;
  try {
    loaded = await loadFromSource(settings, task, load);
  } catch (caught) {
    load.stopProgress();
    const error = load.lost ?? caught;
    if (error instanceof LoadLost) {
      logger.warn({ reason: error.message }, 'the load is no longer this cluster’s: stopped');
      // The model is gone: what was stored is nobody's. Otherwise it is the new holder's destination.
      if (error.removeStored) await removeDownloaded();
      return;
    }
    await removeDownloaded();
    if (closing.aborted) {
      logger.info('loader closing: the load is left to lapse and be retried');
      return;
    }
    return fail(error instanceof LoadFailure ? error.message : `loading failed: ${(error as Error).message}`);
  }

  load.stopProgress();
  try {
    await load.report({ status: 'SUCCEEDED', objectPath: loaded.objectPath, formats: loaded.formats, message: loaded.message });
    logger.info({ objectPath: loaded.objectPath, formats: loaded.formats }, 'model loaded');
  } catch (error) {
    // The control plane checks the stored path in ITS store: a refusal means the agent writes elsewhere.
    if (error instanceof MarinerError && error.code === ErrorCode.BAD_USER_INPUT) {
      await removeDownloaded();
      return fail(`the control plane refused what this loader stored (${error.message}): the agent and the control plane must use the same object store`);
    }
    // Perhaps recorded (the answer was lost), perhaps not: leave it; if not, the lease lapses and another loader retries.
    logger.warn({ err: (error as Error).message }, 'could not report the loaded model');
  }

  async function fail(reason: string): Promise<void> {
    logger.warn({ reason }, 'model load failed');
    await load.report({ status: 'FAILED', message: reason }).catch((error: Error) => {
      logger.warn({ err: error.message }, 'could not report the failure; the lease will lapse and another loader retry');
    });
  }
}

function loadFromSource(settings: LoaderSettings, task: ModelLoadTask, load: ModelLoad): Promise<LoadedModel> {
  switch (task.sourceRepository) {
    case 'OBJECT_STORE':
    case 'FILE':
      return loadFromStore(settings, task);
    case 'HUGGING_FACE':
      return loadFromHuggingFace(settings, task, load);
    case 'OLLAMA':
      return loadFromOllama(settings, task, load);
    default:
      return Promise.reject(new LoadFailure(`this loader cannot load models from ${task.sourceRepository}`));
  }
}

/**
 * OBJECT_STORE and FILE sources: the model is already in the platform's store, as one object (a GGUF
 * file) or as objects under a folder (a Hugging Face layout); it is used where it is.
 */
async function loadFromStore(settings: LoaderSettings, task: ModelLoadTask): Promise<LoadedModel> {
  const { objectStore } = settings;
  const key = objectStore.keyFromUri(task.source);
  if (!key) throw new LoadFailure(`${task.source} is not in this cluster's object store: the agent must use the platform's object store`);
  const formats = new Set(task.formats);
  if (await objectStore.head(key)) {
    if (key.toLowerCase().endsWith('.gguf')) formats.add('GGUF');
    else if (isWhisperGgmlName(key)) formats.add('WHISPER_GGML');
  } else if (await hasObjectsUnder(objectStore, `${key}/`)) {
    if (await objectStore.head(`${key}/config.json`)) formats.add('HUGGING_FACE');
  } else {
    throw new LoadFailure(`nothing is stored at ${task.source}`);
  }
  if (formats.size === 0) {
    throw new LoadFailure(
      `the format of the model at ${task.source} is unknown: expected a .gguf file, a Whisper ggml-*.bin file, or a Hugging Face folder with a config.json`,
    );
  }
  return { objectPath: task.source, formats: [...formats], message: `using ${task.source} as stored` };
}

/**
 * HUGGING_FACE sources: lists the repository at its current commit and streams every file into the
 * model's destination, `<destination>/<file>`, one at a time, reporting progress. The model is a folder
 * (formats HUGGING_FACE), except a repository of exactly one .gguf file and no config.json (a GGUF
 * release such as TheBloke's single-quantization repos): the model is then that file (formats GGUF),
 * which is what GGUF runtimes open, as for GGUF Files.
 */
async function loadFromHuggingFace(settings: LoaderSettings, task: ModelLoadTask, load: ModelLoad): Promise<LoadedModel> {
  const { objectStore, hub } = settings;
  const repo = task.source;
  if (!HF_REPO.test(repo) || repo.includes('..')) throw new LoadFailure(`"${repo}" is not a Hugging Face repository (org/name)`);
  const destination = objectStore.keyFromUri(task.destination.replace(/\/+$/, ''));
  if (!destination)
    throw new LoadFailure(`the destination ${task.destination} is not in this cluster's object store: the agent must use the platform's object store`);

  const info = await retrying(load, `the model info of ${repo}`, () => hub.modelInfo(repo, load.signal));
  if (info.files.length === 0) throw new LoadFailure(`Hugging Face repository ${repo} has no files`);
  for (const file of info.files) {
    try {
      validateObjectKey(`${destination}/${file.name}`);
    } catch {
      throw new LoadFailure(`Hugging Face repository ${repo} has a file this store cannot hold: ${file.name.slice(0, 200)}`);
    }
  }
  // A load that died before this one (its lease lapsed) may have left files of another revision.
  const wanted = new Set(info.files.map((file) => `${destination}/${file.name}`));
  for (const key of await keysUnder(objectStore, `${destination}/`)) if (!wanted.has(key)) await objectStore.delete(key);

  const revision = COMMIT_SHA.test(info.sha ?? '') ? info.sha! : 'main';
  const sizes = info.files.map((file) => file.size);
  const total = sizes.every((size) => size !== undefined) ? sizes.reduce((sum: number, size) => sum + size!, 0) : undefined;
  const progress = { bytes: 0, file: 0 };
  load.startProgress(() => {
    const current = info.files[progress.file];
    const where = current ? ` (file ${progress.file + 1} of ${info.files.length}: ${current.name})` : '';
    return `downloaded ${formatBytes(progress.bytes)}${total === undefined ? '' : ` of ${formatBytes(total)}`}${where} from Hugging Face ${repo}`;
  });

  for (const [index, file] of info.files.entries()) {
    progress.file = index;
    const key = `${destination}/${file.name}`;
    const before = progress.bytes;
    await retrying(load, `the download of ${file.name} from Hugging Face ${repo}`, async () => {
      progress.bytes = before;
      const body = await hub.download(repo, revision, file.name, load.signal);
      const limit = file.size === undefined ? {} : { maxBytes: file.size };
      try {
        const { bytes } = await objectStore.put(
          key,
          counted(body, (n) => (progress.bytes += n)),
          { signal: load.signal, ...limit },
        );
        if (file.size !== undefined && bytes !== file.size) throw new HubError(`Hugging Face sent ${bytes} of the ${file.size} bytes of ${file.name}`, true);
      } catch (error) {
        if (error instanceof ObjectTooLargeError) throw new LoadFailure(`${file.name} of ${repo} is larger than the ${file.size} bytes Hugging Face listed`);
        throw error;
      }
    });
  }
  progress.file = info.files.length;

  const summary = `downloaded ${info.files.length} files (${formatBytes(progress.bytes)}) from Hugging Face ${repo} at ${revision}`;
  const ggufs = info.files.filter((file) => file.name.toLowerCase().endsWith('.gguf'));
  const hasConfig = info.files.some((file) => file.name === 'config.json');
  if (ggufs.length === 1 && !hasConfig) {
    return { objectPath: objectStore.uri(`${destination}/${ggufs[0]!.name}`), formats: ['GGUF'], message: summary };
  }
  return { objectPath: task.destination, formats: [...new Set<ModelFormat>([...task.formats, 'HUGGING_FACE'])], message: summary };
}

/** An Ollama library reference, as the control plane accepts it (name or name:tag). */
const OLLAMA_REF = /^([a-z0-9][\w.-]{0,95})(?::([\w.-]{1,64}))?$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
/** The layers of an Ollama manifest this loader stores, by media type: the file name under the destination. */
const OLLAMA_LAYERS: Record<string, string> = {
  'application/vnd.ollama.image.model': 'model.gguf',
  'application/vnd.ollama.image.template': 'template',
  'application/vnd.ollama.image.params': 'params.json',
  'application/vnd.ollama.image.license': 'license',
  'application/vnd.ollama.image.system': 'system',
};
const OLLAMA_MODEL_LAYER = 'application/vnd.ollama.image.model';
const MANIFEST_TYPES = ['application/vnd.docker.distribution.manifest.v2+json', 'application/vnd.oci.image.manifest.v1+json'];

interface OllamaLayer {
  mediaType: string;
  digest: string;
  size: number;
  file: string;
}

/**
 * OLLAMA sources: what `ollama pull` does against the registry (an OCI distribution API):
 * `GET /v2/library/<name>/manifests/<tag>`, then `GET /v2/library/<name>/blobs/<digest>` for each layer.
 * Each blob is streamed into `<destination>/<file>` while its sha256 is computed; a blob whose digest or
 * size does not match is removed and fetched again (then the load fails). The model layer is a GGUF.
 */
async function loadFromOllama(settings: LoaderSettings, task: ModelLoadTask, load: ModelLoad): Promise<LoadedModel> {
  const { objectStore } = settings;
  const match = OLLAMA_REF.exec(task.source);
  if (!match) throw new LoadFailure(`"${task.source}" is not an Ollama model (name or name:tag)`);
  const [, name, tag = 'latest'] = match as unknown as [string, string, string | undefined];
  const reference = `${name}:${tag}`;
  const destination = objectStore.keyFromUri(task.destination.replace(/\/+$/, ''));
  if (!destination)
    throw new LoadFailure(`the destination ${task.destination} is not in this cluster's object store: the agent must use the platform's object store`);
  const base = `${settings.ollamaRegistry}/v2/library/${encodeURIComponent(name)}`;

  const layers = await retrying(load, `the manifest of Ollama ${reference}`, () => ollamaManifest(base, name, tag, reference, load.signal));
  const total = layers.reduce((sum, layer) => sum + layer.size, 0);
  const progress = { bytes: 0, layer: 0 };
  load.startProgress(() => {
    const current = layers[progress.layer];
    const where = current ? ` (${current.file}, layer ${progress.layer + 1} of ${layers.length})` : '';
    return `downloaded ${formatBytes(progress.bytes)} of ${formatBytes(total)}${where} from Ollama ${reference}`;
  });
  for (const [index, layer] of layers.entries()) {
    progress.layer = index;
    const key = `${destination}/${layer.file}`;
    const before = progress.bytes;
    await retrying(load, `the download of ${layer.digest} of Ollama ${reference}`, async () => {
      progress.bytes = before;
      let response: Response;
      try {
        response = await fetch(`${base}/blobs/${layer.digest}`, { signal: load.signal });
      } catch (error) {
        if (load.signal.aborted) throw error;
        throw new HubError(`could not reach the Ollama registry at ${settings.ollamaRegistry}: ${causeOf(error)}`, true);
      }
      if (!response.ok) {
        await response.body?.cancel();
        throw new HubError(
          `the Ollama registry answered ${response.status} for the ${layer.file} blob ${layer.digest} of ${reference}`,
          response.status >= 500 || response.status === 429,
        );
      }
      const hash = createHash('sha256');
      const body = (response.body as AsyncIterable<Uint8Array> | null) ?? emptyBody();
      let bytes: number;
      try {
        ({ bytes } = await objectStore.put(
          key,
          counted(body, (n) => (progress.bytes += n), hash),
          { signal: load.signal, maxBytes: layer.size },
        ));
      } catch (error) {
        if (error instanceof ObjectTooLargeError)
          throw new LoadFailure(`the ${layer.file} blob of Ollama ${reference} is larger than the ${layer.size} bytes its manifest lists`);
        throw error;
      }
      const digest = `sha256:${hash.digest('hex')}`;
      if (bytes !== layer.size || digest !== layer.digest) {
        await objectStore.delete(key);
        throw new HubError(
          `the ${layer.file} blob of Ollama ${reference} does not match its manifest: expected ${layer.digest} (${layer.size} bytes), got ${digest} (${bytes} bytes)`,
          true,
        );
      }
    });
  }
  progress.layer = layers.length;
  return {
    objectPath: objectStore.uri(`${destination}/${OLLAMA_LAYERS[OLLAMA_MODEL_LAYER]}`),
    formats: ['GGUF'],
    message: `pulled ${layers.length} layers (${formatBytes(progress.bytes)}) of Ollama ${reference}, digests verified`,
  };
}

/** The layers of an Ollama model's manifest that this loader stores; a LoadFailure when it is not a model. */
async function ollamaManifest(base: string, name: string, tag: string, reference: string, signal: AbortSignal): Promise<OllamaLayer[]> {
  let response: Response;
  try {
    response = await fetch(`${base}/manifests/${encodeURIComponent(tag)}`, { signal, headers: { accept: MANIFEST_TYPES.join(', ') } });
  } catch (error) {
    if (signal.aborted) throw error;
    throw new HubError(`could not reach the Ollama registry for ${reference}: ${causeOf(error)}`, true);
  }
  if (response.status === 404) {
    await response.body?.cancel();
    throw new LoadFailure(`no such model in the Ollama library: ${reference} (see https://ollama.com/library/${name})`);
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new HubError(`the Ollama registry answered ${response.status} for the manifest of ${reference}`, response.status >= 500 || response.status === 429);
  }
  let manifest: { layers?: unknown };
  try {
    manifest = (await response.json()) as typeof manifest;
  } catch {
    throw new HubError(`the Ollama registry answered the manifest of ${reference} without JSON`, true);
  }
  if (!Array.isArray(manifest.layers)) throw new LoadFailure(`the manifest of Ollama ${reference} has no layers`);
  const layers: OllamaLayer[] = [];
  for (const layer of manifest.layers as { mediaType?: unknown; digest?: unknown; size?: unknown }[]) {
    const file = typeof layer?.mediaType === 'string' ? OLLAMA_LAYERS[layer.mediaType] : undefined;
    if (!file || layers.some((known) => known.file === file)) continue;
    if (typeof layer.digest !== 'string' || !DIGEST.test(layer.digest) || typeof layer.size !== 'number' || !(layer.size >= 0)) {
      throw new LoadFailure(`the manifest of Ollama ${reference} has a ${String(layer.mediaType)} layer without a sha256 digest and size`);
    }
    layers.push({ mediaType: layer.mediaType as string, digest: layer.digest, size: layer.size, file });
  }
  if (!layers.some((layer) => layer.mediaType === OLLAMA_MODEL_LAYER)) {
    throw new LoadFailure(`Ollama ${reference} has no model layer (${OLLAMA_MODEL_LAYER}): it is not a model this loader can load`);
  }
  return layers;
}

/**
 * One load in progress: its abort signal (the loader closing, or the load lost), its logger, and its
 * reports: LOADING with progress every third of the lease while the loader works (each
 * renews the lease), then the outcome. Reports go out one at a time. A LOADING report the control plane
 * refuses (the load is another cluster's now, or the model is gone) aborts the load (`lost`).
 */
class ModelLoad {
  readonly signal: AbortSignal;
  lost: LoadLost | null = null;
  private readonly own = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private progress: (() => string) | null = null;
  private leaseExpiresAt: string | null;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly settings: LoaderSettings,
    private readonly task: ModelLoadTask,
    private readonly closing: AbortSignal,
    readonly logger: Logger,
  ) {
    this.signal = AbortSignal.any([closing, this.own.signal]);
    this.leaseExpiresAt = task.leaseExpiresAt;
  }

  /** Reports `message()` now, then every third of the lease until stopProgress(). */
  startProgress(message: () => string): void {
    this.progress = message;
    void this.renew();
  }

  stopProgress(): void {
    this.progress = null;
    clearTimeout(this.timer);
  }

  private async renew(): Promise<void> {
    const message = this.progress;
    if (!message || this.signal.aborted) return;
    try {
      await this.send({ status: 'LOADING', message: message() });
    } catch (error) {
      if (error instanceof MarinerError && LOST_LOAD_CODES.has(error.code)) {
        this.lost = new LoadLost(error.message, error.code === ErrorCode.NOT_FOUND);
        this.own.abort(this.lost);
        return;
      }
      // The lease lasts three intervals: the next report may get through.
      if (!this.signal.aborted) this.logger.warn({ err: (error as Error).message }, 'progress report failed; retrying');
    }
    if (this.progress && !this.signal.aborted) {
      this.timer = setTimeout(() => void this.renew(), this.renewalDelay());
      this.timer.unref();
    }
  }

  private renewalDelay(): number {
    const left = this.leaseExpiresAt ? Date.parse(this.leaseExpiresAt) - Date.now() : 0;
    return Math.min(RENEW_MAX_MS, Math.max(RENEW_MIN_MS, left / 3));
  }

  /** The outcome, retried while the failure may pass (the lease is still ours meanwhile). */
  async report(input: LoadReport): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.send(input);
        return;
      } catch (error) {
        const passing = !(error instanceof MarinerError) || PASSING_REPORT_CODES.has(error.code);
        if (!passing || attempt >= ATTEMPTS || this.closing.aborted) throw error;
        await delay(RETRY_DELAYS_MS[attempt - 1] ?? 1_000, this.closing);
      }
    }
  }

  private send(input: LoadReport): Promise<void> {
    const sent = this.queue.then(async () => {
      const { reportModelLoading } = await graphqlRequest<{ reportModelLoading: { leaseExpiresAt: string | null } }>(
        this.settings.graphqlUrl,
        REPORT,
        { input: { id: this.task.modelId, ...input, ...(input.message ? { message: printable(input.message) } : {}) } },
        this.settings.headers,
        this.closing,
      );
      this.leaseExpiresAt = reportModelLoading.leaseExpiresAt;
    });
    this.queue = sent.catch(() => {});
    return sent;
  }
}

interface HubFile {
  /** The path in the repository (`rfilename`). */
  name: string;
  size: number | undefined;
}

/** An answer of the Hub that is not a success; `transient` ones are worth another try. */
class HubError extends LoadFailure {
  constructor(
    message: string,
    readonly transient: boolean,
  ) {
    super(message);
  }
}

/**
 * The Hugging Face Hub HTTP API, the part huggingface_hub's `snapshot_download` uses:
 * `GET /api/models/{repo}?blobs=true` (model info: `sha`, and `siblings[]` of `{ rfilename, size }`) and
 * `GET /{repo}/resolve/{revision}/{path}`, which answers small files directly and LFS files with a
 * redirect to a signed CDN URL. The token goes to the Hub's own origin only, never to the CDN.
 * Errors follow huggingface_hub `hf_raise_for_status`: the `X-Error-Code` header (`RepoNotFound`,
 * `GatedRepo`, `RevisionNotFound`, `EntryNotFound`), and a 401 for unknown or private repositories
 * when no token is sent.
 */
class HuggingFaceHub {
  private readonly origin: string;
  readonly endpoint: string;

  constructor(
    endpoint: string,
    private readonly token: string | undefined,
  ) {
    this.endpoint = endpoint.replace(/\/+$/, '');
    this.origin = new URL(this.endpoint).origin;
  }

  async modelInfo(repo: string, signal: AbortSignal): Promise<{ sha: string | undefined; files: HubFile[] }> {
    const response = await this.get(`${this.endpoint}/api/models/${repoPath(repo)}?blobs=true`, signal);
    if (!response.ok) throw await this.failure(response, repo, 'info');
    let info: { sha?: unknown; siblings?: unknown };
    try {
      info = (await response.json()) as typeof info;
    } catch {
      throw new HubError(`Hugging Face answered the model info of ${repo} without JSON`, true);
    }
    if (!Array.isArray(info.siblings)) throw new HubError(`Hugging Face answered the model info of ${repo} without its files (siblings)`, false);
    const files: HubFile[] = [];
    for (const sibling of info.siblings as { rfilename?: unknown; size?: unknown }[]) {
      if (typeof sibling?.rfilename !== 'string' || sibling.rfilename === '') continue;
      files.push({ name: sibling.rfilename, size: typeof sibling.size === 'number' && sibling.size >= 0 ? sibling.size : undefined });
    }
    return { sha: typeof info.sha === 'string' ? info.sha : undefined, files };
  }

  /** The bytes of one file at `revision`, following the Hub's redirects. */
  async download(repo: string, revision: string, file: string, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const path = file.split('/').map(encodeURIComponent).join('/');
    const response = await this.get(`${this.endpoint}/${repoPath(repo)}/resolve/${encodeURIComponent(revision)}/${path}`, signal);
    if (!response.ok) throw await this.failure(response, repo, file);
    return (response.body as AsyncIterable<Uint8Array> | null) ?? emptyBody();
  }

  /** GET, following up to 10 redirects by hand, so that the token goes to the Hub's origin only. */
  private async get(start: string, signal: AbortSignal): Promise<Response> {
    let url = new URL(start);
    for (let hops = 0; ; hops++) {
      let response: Response;
      try {
        const credentials = this.token && url.origin === this.origin ? { authorization: `Bearer ${this.token}` } : undefined;
        response = await fetch(url, { redirect: 'manual', signal, ...(credentials ? { headers: credentials } : {}) });
      } catch (error) {
        if (signal.aborted) throw error;
        throw new HubError(`could not reach Hugging Face at ${url.origin}: ${causeOf(error)}`, true);
      }
      const location = response.headers.get('location');
      if (response.status < 300 || response.status > 399 || !location) return response;
      await response.body?.cancel();
      if (hops >= 10) throw new HubError(`Hugging Face redirected ${start} too many times`, false);
      url = new URL(location, url);
    }
  }

  /** The LoadFailure for an unsuccessful answer, saying what to do about it. */
  private async failure(response: Response, repo: string, file: string | 'info'): Promise<HubError> {
    const what = file === 'info' ? `the model info of ${repo}` : `${file} of ${repo}`;
    const code = response.headers.get('x-error-code');
    const text = await response.text().catch(() => '');
    let serverMessage = response.headers.get('x-error-message') ?? '';
    if (!serverMessage) {
      try {
        serverMessage = String((JSON.parse(text) as { error?: unknown }).error ?? '');
      } catch {
        serverMessage = text.slice(0, 200);
      }
    }
    const status = response.status;
    const page = `${this.endpoint}/${repo}`;
    const fromHub = new URL(response.url || this.endpoint).origin === this.origin;
    if (code === 'GatedRepo') {
      return new HubError(
        this.token
          ? `Hugging Face model ${repo} is gated and the account of HF_TOKEN has no access to it: request access at ${page}, then create the model again`
          : `Hugging Face model ${repo} is gated: accept its conditions at ${page} and set HF_TOKEN on the agent to a token of that account`,
        false,
      );
    }
    if (status === 401 && this.token && /invalid credentials/i.test(serverMessage)) {
      return new HubError('Hugging Face refused HF_TOKEN (invalid credentials): set HF_TOKEN on the agent to a valid access token', false);
    }
    if (code === 'RepoNotFound' || (fromHub && (status === 401 || status === 404) && file === 'info')) {
      return new HubError(
        this.token
          ? `no such repository on Hugging Face: ${repo} (or the account of HF_TOKEN cannot see it)`
          : `no such repository on Hugging Face: ${repo} (if it is private or gated, set HF_TOKEN on the agent to a token that can read it)`,
        false,
      );
    }
    if (code === 'RevisionNotFound') return new HubError(`Hugging Face repository ${repo} has no such revision: ${serverMessage}`, false);
    if (code === 'EntryNotFound') return new HubError(`${what} is listed but Hugging Face does not have it (404)`, false);
    if (status === 401) {
      return new HubError(`Hugging Face refused ${what} (401): ${this.token ? 'check HF_TOKEN' : 'set HF_TOKEN on the agent'}`, false);
    }
    if (status === 429) {
      return new HubError(`Hugging Face is rate-limiting this cluster (429)${this.token ? '' : ': setting HF_TOKEN raises the limit'}`, true);
    }
    // A CDN link that expired or failed is retried with a fresh one from the Hub.
    const transient = status >= 500 || !fromHub;
    return new HubError(`Hugging Face answered ${status} for ${what}${serverMessage ? `: ${serverMessage}` : ''}`, transient);
  }
}

function repoPath(repo: string): string {
  return repo.split('/').map(encodeURIComponent).join('/');
}

/** Runs `attempt` again (after a pause) while it fails in a way that may pass: network, 5xx, 429, a blob not matching its digest. */
async function retrying<T>(load: ModelLoad, what: string, attempt: () => Promise<T>): Promise<T> {
  for (let tries = 1; ; tries++) {
    try {
      return await attempt();
    } catch (error) {
      if (load.signal.aborted || !isTransient(error)) throw error;
      if (tries >= ATTEMPTS) throw error instanceof TypeError ? new LoadFailure(`${what} broke off: ${causeOf(error)}`) : error;
      load.logger.warn({ what, attempt: tries, err: (error as Error).message }, 'download request failed; retrying');
      await delay(RETRY_DELAYS_MS[tries - 1] ?? 1_000, load.signal);
    }
  }
}

function isTransient(error: unknown): boolean {
  if (error instanceof HubError) return error.transient;
  // fetch reports a connection lost mid-body as a TypeError ("terminated").
  return error instanceof TypeError;
}

function causeOf(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error as Error).message;
}

async function* counted(body: AsyncIterable<Uint8Array>, onBytes: (n: number) => void, hash?: Hash): AsyncIterable<Uint8Array> {
  for await (const chunk of body) {
    hash?.update(chunk);
    onBytes(chunk.byteLength);
    yield chunk;
  }
}

async function* emptyBody(): AsyncIterable<Uint8Array> {}

async function hasObjectsUnder(objectStore: ObjectStore, prefix: string): Promise<boolean> {
  for await (const _object of objectStore.list(prefix)) return true;
  return false;
}

async function keysUnder(objectStore: ObjectStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const object of objectStore.list(prefix)) keys.push(object.key);
  return keys;
}

/** Removes what a load stored under its destination, so that nothing partial stays. */
async function removeStored(settings: LoaderSettings, destination: string, logger: Logger): Promise<void> {
  try {
    for (const key of await keysUnder(settings.objectStore, `${destination}/`)) await settings.objectStore.delete(key);
  } catch (error) {
    logger.warn({ err: (error as Error).message }, 'could not remove what the load stored');
  }
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** `1.2 GiB`: binary units, one decimal. */
function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** A report message the control plane accepts: printable, at most 2,000 characters. */
function printable(message: string): string {
  return message.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g, ' ').slice(0, MAX_MESSAGE);
}
