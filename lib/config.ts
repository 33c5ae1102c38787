import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseSchedules, type ScalingSchedule } from './scalingSchedule.js';

/**
 * Every setting Mariner reads, with its default, computed in one place.
 * Environment variables win; nothing else reads process.env.
 */
export interface MarinerConfig {
  /** `development` turns on introspection and the explorer page by default. */
  environment: 'development' | 'production';
  /** Public port: GraphQL at /graphql, OpenAI API at /v1. */
  port: number;
  /** Loopback address the embedded components bind to. */
  host: string;
  /** Where the embedded database, object store and secrets live. */
  dataDir: string;
  /** Postgres connection string; when empty the embedded PGlite is used. */
  databaseUrl: string | undefined;
  /**
   * Connections of this process's PostgreSQL pool (MARINER_DB_POOL_SIZE, 1-200; default 10). Every pod
   * of every component has its own pool: their sum must stay under the server's max_connections (100 by
   * default), so the chart sets a small one per component (charts/mariner: controlPlaneDefaults.databasePoolSize).
   */
  databasePoolSize: number;
  /**
   * Namespaces no project may be assigned (MARINER_RESERVED_NAMESPACES, comma-separated), besides
   * Kubernetes' own: the chart names the control plane's and the runtimes' namespaces, where the agent
   * holds rights users must not borrow through /v1/sessions (subgraphs/users/validation.ts).
   */
  reservedNamespaces: string[];
  /** Fixes the bootstrap admin key instead of generating one. */
  adminApiKey: string | undefined;
  /** Email of the bootstrap admin user. */
  adminEmail: string;
  /** HMAC secret for internal identity tokens; generated into the data dir when empty. */
  internalTokenSecret: string | undefined;
  /** Lifetime of an internal identity token. */
  internalTokenTtlSeconds: number;
  logLevel: string;
  /**
   * How log lines are written: `json` (one JSON object a line, for log collectors), `pretty` (readable
   * lines), or `auto`: pretty when stdout is a terminal, JSON otherwise.
   */
  logFormat: LogFormat;
  introspection: boolean;
  oidc: {
    /** Issuer URL; OIDC is off when empty. */
    issuer: string | undefined;
    /**
     * Required `aud`: the client id tokens must be minted for. Set whenever the issuer is: without it a
     * token the same issuer minted for any other client (another app, another organization's) would do.
     */
    audience: string | undefined;
    /** Claim carrying the user's email. */
    emailClaim: string;
    /** The console's browser sign-in: the client secret when Mariner is a confidential client (PKCE alone otherwise). */
    clientSecret?: string | undefined;
  };
  limits: {
    maxDepth: number;
    maxAliases: number;
    maxTokens: number;
    maxCost: number;
    maxDirectives: number;
    /** Largest accepted GraphQL request body. */
    maxBodyBytes: number;
  };
  /** Role → scopes table override (JSON file path), see schema/rbac/roleScopes.ts. */
  roleScopesFile: string | undefined;
  /** Where file bytes and models live (lib/objectStore). */
  objectStore: ObjectStoreConfig;
  files: {
    /** Largest accepted file upload, enforced while streaming. */
    maxFileBytes: number;
    /** An upload reserved but not completed within this time is swept (object deleted). */
    uploadExpirySeconds: number;
    /** Longest line (one example) of a fine-tuning file; a longer one is refused without being held in memory. */
    maxFineTuneLineBytes: number;
  };
  models: {
    /**
     * How long a cluster's loader holds a model it acquired without reporting progress; after that
     * another cluster may take the load over (a loader that crashed).
     */
    loadLeaseSeconds: number;
  };
  clusters: {
    /** A cluster status report older than this is stale: schedulers skip the cluster. */
    statusStaleSeconds: number;
    /** `mariner up` registers a default cluster and runs an embedded local agent for it. */
    defaultCluster: boolean;
    /**
     * `mariner serve clusters`: registers (or re-keys) the default cluster with this registration key at
     * start (MARINER_DEFAULT_CLUSTER_KEY, clusterkey-..., from a Secret the chart generates), so an agent
     * installed with the control plane connects without anyone calling registerCluster. Idempotent.
     */
    defaultClusterKey: string | undefined;
    /** The seeded default cluster's name (MARINER_DEFAULT_CLUSTER_NAME; default `default`). */
    defaultClusterName: string;
    /** Cluster telemetry (agents' reports as a time series) older than this many days is deleted; 0 keeps it. */
    telemetryRetentionDays: number;
  };
  /** Where agents' model loaders download Hugging Face models (HF_ENDPOINT, HF_TOKEN as the Hub's own tools). */
  huggingFace: { endpoint: string; token: string | undefined };
  inference: {
    /** A runtime report older than this is not routed to (agents report every status interval). */
    runtimeFreshSeconds: number;
    /** How long a request waits for a runtime of its model to become ready (then 503 with Retry-After). */
    requestWaitSeconds: number;
    /** Per API key: inference requests per minute, and tokens (prompt + completion) per minute; 0 = unlimited. */
    rateLimitRequestsPerMinute: number;
    rateLimitTokensPerMinute: number;
    /** How often usage records are written, batched (ms). */
    usageFlushIntervalMs: number;
    /** Usage records older than this many days are deleted; 0 keeps them. */
    usageRetentionDays: number;
    /**
     * The default price table of cost budgets: model id → `{"input": N, "output": N}`, USD micro-units (1e-6
     * USD, whole numbers) per 1M prompt and completion tokens (MARINER_MODEL_PRICES, a JSON object). An
     * organization's own prices (setModelPrice) override it.
     */
    modelPrices: Record<string, { inputMicrosPerMillion: number; outputMicrosPerMillion: number }>;
  };
  vectorStores: VectorStoresConfig;
  batches: BatchesConfig;
  /** The agents' builtin autoscaler of inference runtimes (agent/autoscaler.ts; LLMariner engine `autoscaler`). */
  autoscaler: AutoscalerConfig;
  /** graphql-ws subscriptions at the gateway (DESIGN §3). */
  subscriptions: {
    /** Operations open at once on one connection, and for one user across a gateway replica's connections. */
    maxPerConnection: number;
    maxPerUser: number;
    /** A subscriber this many events behind is dropped with a RATE_LIMITED error (it resumes, e.g. from a log offset). */
    maxQueuedEvents: number;
    /** How often a connection's credential is checked again (revoked key: closed with 4401). */
    revalidateIntervalMs: number;
    /** Time a client has to send connection_init (then 4408). */
    initTimeoutMs: number;
  };
  jobs: {
    /** How often jobs waiting for an agent are dispatched again (they also go at once on changes). */
    dispatchIntervalMs: number;
    /**
     * The local executor's trainer, as argv (MARINER_LOCAL_TRAINER_COMMAND: a JSON array of strings, or
     * words separated by spaces). Unset: fine-tuning jobs on the local executor are refused with a clear
     * reason. `mariner up --demo-model` sets the demo trainer (agent/trainers/demoTrainer.ts).
     */
    localTrainerCommand: string[] | undefined;
    /** Batch job image presets, name → image (MARINER_BATCH_IMAGES, a JSON object; LLMariner Helm `batchJob.images`). */
    batchImages: Record<string, string>;
    /** Notebook image presets, name → image (MARINER_NOTEBOOK_IMAGES; LLMariner `notebook.imageTypes`). */
    notebookImages: Record<string, string>;
    /**
     * Whether the local executor runs batch jobs: their commands run on this machine as the platform's
     * user, so only where every project member may do that (MARINER_LOCAL_BATCH_JOBS, default off).
     */
    localBatchJobs: boolean;
    /** A job whose cluster has not reported its status for this long is placed on another (MARINER_JOB_RESCHEDULE_AFTER_SECONDS; LLMariner: 30 min). */
    rescheduleAfterSeconds: number;
  };
  sessions: {
    /** HTTP/2 PING interval on each agent tunnel. */
    heartbeatIntervalMs: number;
    /** A tunnel whose PING is unanswered this long is closed (its in-flight requests fail). */
    heartbeatTimeoutMs: number;
    /** How often a live tunnel's registration key is checked again (unregistered → closed). */
    revalidateIntervalMs: number;
    /** How long a `/v1/sessions` authorization decision is reused for the same credential and path kind. */
    authCacheMs: number;
    /**
     * The peer endpoint of `mariner serve sessions` (MARINER_SESSIONS_PEER_PORT; unset: off, and only
     * its own process reaches its tunnels; 0: any free port): where other replicas, and the inference
     * and jobs processes, send requests for clusters whose tunnels end here (subgraphs/sessions/peers.ts).
     */
    peerPort: number | undefined;
    /** The host:port other replicas reach it at (MARINER_SESSIONS_PEER_ADDRESS; else POD_IP:port, else host:port). */
    peerAddress: string | undefined;
    /**
     * How often a replica refreshes its rows in the tunnel directory (MARINER_SESSIONS_PEER_HEARTBEAT_MS);
     * 3 missed: gone. The inference and jobs processes read it too: the same value everywhere.
     */
    peerHeartbeatMs: number;
    /**
     * Whether /v1/sessions forwards exec, attach and port-forward into project namespaces
     * (MARINER_SESSIONS_EXEC, default off): a member who may write could then run commands in any pod of
     * the namespace with what that pod mounts. The agent's Role must grant pods/exec too (the chart:
     * worker.sessions.allowExec). Secrets are never forwarded (subgraphs/sessions/kubeAllowList.ts).
     */
    allowExec: boolean;
  };
}

/** Vector stores (subgraphs/vectorstores): where vectors live and how files are ingested. */
export interface VectorStoresConfig {
  /**
   * The vector index: `pgvector` (the platform's Postgres, embedded PGlite included; refuses to start
   * without the extension), `milvus` (one collection per store), or `auto`: pgvector where the
   * database has the extension, else none (vector stores answer FAILED_PRECONDITION, everything else runs).
   */
  index: 'auto' | 'pgvector' | 'milvus';
  /** Milvus gRPC address (host:port) and credentials, for `index: milvus`. */
  milvus: { address: string | undefined; token: string | undefined; database: string | undefined; ssl: boolean };
  /** Similarity of new stores: cosine (default) or l2. */
  metric: 'cosine' | 'l2';
  /** Embedding model of stores created without one (LLMariner: one model fixed by config). */
  defaultEmbeddingModel: string;
  /** Chunks per embeddings request. */
  embeddingBatchSize: number;
  /** Files ingested at once by one replica. */
  ingestionConcurrency: number;
  /** A file whose ingestion lease is not renewed for this long is taken over (its worker crashed). */
  ingestionLeaseSeconds: number;
}

/** OpenAI's Batch API (subgraphs/batches): how many of a batch's requests run at once, so interactive traffic keeps priority. */
export interface BatchesConfig {
  /** Requests of one batch running at once, across replicas. */
  concurrencyPerBatch: number;
  /** Requests of all of one tenant's batches running at once, across replicas (at least concurrencyPerBatch). */
  concurrencyPerTenant: number;
  /** Requests one replica runs at once, over all batches. */
  concurrencyPerReplica: number;
  /** A request whose lease is not renewed for this long is taken over (its replica died before storing the answer). */
  leaseSeconds: number;
  /** How long a batch may run (OpenAI's completion window is 24h; tests shorten it). */
  completionWindowSeconds: number;
  /** How often a replica looks for work when nothing woke it (ms). */
  pollIntervalMs: number;
  /** Requests of one input file at most (OpenAI: 50,000). */
  maxRequests: number;
  /**
   * Whether a batch's requests are sent as `batch` priority, which the local runtime serves after
   * interactive ones (lib/requestPriority.ts; MARINER_BATCH_YIELD_TO_INTERACTIVE, default on; off only to
   * measure what it is worth, test/bench/batches.ts).
   */
  yieldToInteractive: boolean;
}

/** How one model's runtime scales (LLMariner builtin scaler settings). */
export interface ScalerSettings {
  /** Requests in flight each replica should carry; the replicas wanted are ceil(average in flight / this). */
  targetInFlight: number;
  /** 0 allows scale to zero once the model has been idle for `scaleToZeroGraceSeconds`. */
  minReplicas: number;
  maxReplicas: number;
  /** One step up goes to at most ceil(current × this) replicas (≥ 1). */
  maxScaleUpRate: number;
  /** One step down keeps at least floor(current × this) replicas (0 to 1). */
  maxScaleDownRate: number;
  /** In-flight requests are averaged over this many seconds. */
  metricsWindowSeconds: number;
  /** A model with no request for this long goes to zero replicas (when `minReplicas` is 0). */
  scaleToZeroGraceSeconds: number;
}

export interface AutoscalerConfig {
  /** Off: each runtime runs the replicas its model's config asks for (MARINER_AUTOSCALER_ENABLED, default off). */
  enabled: boolean;
  /** How often each model's replicas are decided (ms). */
  syncPeriodMs: number;
  /** Every model's settings (MARINER_AUTOSCALER_*). */
  defaults: ScalerSettings;
  /** Per model id, settings that differ from the defaults (MARINER_AUTOSCALER_MODELS, a JSON object). */
  models: Record<string, Partial<ScalerSettings>>;
  /** Per model id, scheduled replica bounds (MARINER_AUTOSCALER_SCHEDULES, a JSON object; lib/scalingSchedule.ts). */
  schedules?: Record<string, ScalingSchedule[]>;
}

export type ObjectStoreConfig =
  | { driver: 'filesystem'; dir: string }
  | {
      driver: 's3';
      bucket: string;
      endpoint: string | undefined;
      region: string;
      forcePathStyle: boolean;
      /** Credentials; when empty the AWS SDK's default chain applies (env, IRSA, instance role). */
      accessKeyId: string | undefined;
      secretAccessKey: string | undefined;
      /** Key prefix inside the bucket. */
      prefix: string;
      /** A missing bucket at start: auto creates it (when the credentials may), never fails naming it (default auto). */
      createBucket?: 'auto' | 'never';
    };

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Record<string, string | undefined>;

function intSetting(env: Env, name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be an integer between ${min} and ${max}, got "${raw}"`);
  }
  return value;
}

function numberSetting(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || value > max) throw new ConfigError(`${name} must be a number between ${min} and ${max}, got "${raw}"`);
  return value;
}

function boolSetting(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (['1', 'true', 'yes', 'on'].includes(raw.toLowerCase())) return true;
  if (['0', 'false', 'no', 'off'].includes(raw.toLowerCase())) return false;
  throw new ConfigError(`${name} must be true or false, got "${raw}"`);
}

export type LogFormat = 'auto' | 'json' | 'pretty';

/** MARINER_LOG_FORMAT; read by lib/logging.ts too, as `mariner agent` makes its logger without a config. */
export function logFormatSetting(env: Env = process.env): LogFormat {
  const raw = stringSetting(env, 'MARINER_LOG_FORMAT')?.toLowerCase() ?? 'auto';
  if (raw !== 'auto' && raw !== 'json' && raw !== 'pretty') throw new ConfigError(`MARINER_LOG_FORMAT must be auto, json or pretty, got "${raw}"`);
  return raw;
}

function stringSetting(env: Env, name: string): string | undefined {
  const raw = env[name];
  return raw === undefined || raw.trim() === '' ? undefined : raw.trim();
}

/** Reads the configuration; a bad value throws a ConfigError naming the variable. */
export function loadConfig(env: Env = process.env, overrides: Partial<MarinerConfig> = {}): MarinerConfig {
  const environmentRaw = stringSetting(env, 'MARINER_ENV') ?? 'development';
  if (environmentRaw !== 'development' && environmentRaw !== 'production') {
    throw new ConfigError(`MARINER_ENV must be development or production, got "${environmentRaw}"`);
  }
  const environment = environmentRaw;
  const adminApiKey = stringSetting(env, 'MARINER_ADMIN_API_KEY');
  if (adminApiKey !== undefined && !/^sk-[A-Za-z0-9_-]{20,200}$/.test(adminApiKey)) {
    throw new ConfigError('MARINER_ADMIN_API_KEY must look like sk- followed by at least 20 letters, digits, - or _');
  }
  const issuer = stringSetting(env, 'MARINER_OIDC_ISSUER');
  if (issuer !== undefined && !/^https?:\/\//.test(issuer)) {
    throw new ConfigError(`MARINER_OIDC_ISSUER must be an http(s) URL, got "${issuer}"`);
  }
  const audience = stringSetting(env, 'MARINER_OIDC_AUDIENCE');
  if (issuer !== undefined && audience === undefined) {
    throw new ConfigError(
      'MARINER_OIDC_ISSUER is set, so MARINER_OIDC_AUDIENCE must be too: the client id of Mariner at that issuer (tokens minted for other clients are refused)',
    );
  }
  const databaseUrl = stringSetting(env, 'DATABASE_URL');
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError('DATABASE_URL must be a postgres:// connection string');
  }
  const dataDir = path.resolve(stringSetting(env, 'MARINER_DATA_DIR') ?? '.mariner');
  const base: MarinerConfig = {
    environment,
    port: intSetting(env, 'MARINER_PORT', 8080, 0, 65535),
    host: stringSetting(env, 'MARINER_HOST') ?? '127.0.0.1',
    dataDir,
    databaseUrl,
    databasePoolSize: intSetting(env, 'MARINER_DB_POOL_SIZE', 10, 1, 200),
    reservedNamespaces: reservedNamespacesSetting(env),
    adminApiKey,
    adminEmail: stringSetting(env, 'MARINER_ADMIN_EMAIL') ?? 'admin@example.com',
    internalTokenSecret: stringSetting(env, 'MARINER_INTERNAL_TOKEN_SECRET'),
    internalTokenTtlSeconds: intSetting(env, 'MARINER_INTERNAL_TOKEN_TTL_SECONDS', 60, 5, 3600),
    logLevel: stringSetting(env, 'MARINER_LOG_LEVEL') ?? 'info',
    logFormat: logFormatSetting(env),
    introspection: boolSetting(env, 'MARINER_INTROSPECTION', environment === 'development'),
    oidc: {
      issuer,
      audience,
      emailClaim: stringSetting(env, 'MARINER_OIDC_EMAIL_CLAIM') ?? 'email',
      clientSecret: stringSetting(env, 'MARINER_OIDC_CLIENT_SECRET'),
    },
    limits: {
      maxDepth: intSetting(env, 'MARINER_MAX_DEPTH', 10, 1, 100),
      maxAliases: intSetting(env, 'MARINER_MAX_ALIASES', 15, 0, 1000),
      maxTokens: intSetting(env, 'MARINER_MAX_TOKENS', 2000, 10, 100000),
      maxCost: intSetting(env, 'MARINER_MAX_COST', 5000, 1, 10000000),
      maxDirectives: intSetting(env, 'MARINER_MAX_DIRECTIVES', 50, 0, 1000),
      // 2 MiB: a batch job's scripts may hold 1 MB (LLMariner §4b), a third more as base64.
      maxBodyBytes: intSetting(env, 'MARINER_MAX_BODY_BYTES', 2 * 1024 * 1024, 1024, 64 * 1024 * 1024),
    },
    roleScopesFile: stringSetting(env, 'MARINER_ROLE_SCOPES_FILE'),
    objectStore: objectStoreSetting(env, dataDir),
    files: {
      maxFileBytes: intSetting(env, 'MARINER_MAX_FILE_BYTES', 512 * 1024 * 1024, 1, Number.MAX_SAFE_INTEGER),
      uploadExpirySeconds: intSetting(env, 'MARINER_UPLOAD_EXPIRY_SECONDS', 3600, 10, 7 * 24 * 3600),
      // 4 MiB: a 128k-token example is ~0.5 MB of text, up to 6 bytes a character once JSON-escaped.
      maxFineTuneLineBytes: intSetting(env, 'MARINER_MAX_FINE_TUNE_LINE_BYTES', 4 * 1024 * 1024, 1024, 256 * 1024 * 1024),
    },
    models: {
      loadLeaseSeconds: intSetting(env, 'MARINER_MODEL_LOAD_LEASE_SECONDS', 600, 1, 7 * 24 * 3600),
    },
    clusters: {
      statusStaleSeconds: intSetting(env, 'MARINER_CLUSTER_STALE_SECONDS', 180, 5, 7 * 24 * 3600),
      defaultCluster: boolSetting(env, 'MARINER_DEFAULT_CLUSTER', true),
      defaultClusterKey: defaultClusterKeySetting(env),
      defaultClusterName: stringSetting(env, 'MARINER_DEFAULT_CLUSTER_NAME') ?? 'default',
      telemetryRetentionDays: intSetting(env, 'MARINER_TELEMETRY_RETENTION_DAYS', 30, 0, 36_500),
    },
    huggingFace: {
      endpoint: stringSetting(env, 'HF_ENDPOINT') ?? 'https://huggingface.co',
      token: stringSetting(env, 'HF_TOKEN'),
    },
    inference: {
      runtimeFreshSeconds: intSetting(env, 'MARINER_RUNTIME_FRESH_SECONDS', 90, 5, 3600),
      requestWaitSeconds: intSetting(env, 'MARINER_INFERENCE_WAIT_SECONDS', 120, 0, 3600),
      rateLimitRequestsPerMinute: intSetting(env, 'MARINER_RATE_LIMIT_RPM', 0, 0, 100_000_000),
      rateLimitTokensPerMinute: intSetting(env, 'MARINER_RATE_LIMIT_TPM', 0, 0, 1_000_000_000),
      usageFlushIntervalMs: intSetting(env, 'MARINER_USAGE_FLUSH_MS', 1_000, 10, 600_000),
      usageRetentionDays: intSetting(env, 'MARINER_USAGE_RETENTION_DAYS', 90, 0, 36_500),
      modelPrices: modelPricesSetting(env, 'MARINER_MODEL_PRICES'),
    },
    vectorStores: vectorStoresSetting(env),
    batches: batchesSetting(env),
    autoscaler: autoscalerSetting(env),
    subscriptions: {
      maxPerConnection: intSetting(env, 'MARINER_WS_MAX_PER_CONNECTION', 100, 1, 100_000),
      maxPerUser: intSetting(env, 'MARINER_WS_MAX_PER_USER', 1_000, 1, 1_000_000),
      maxQueuedEvents: intSetting(env, 'MARINER_WS_MAX_QUEUED_EVENTS', 1_000, 1, 1_000_000),
      revalidateIntervalMs: intSetting(env, 'MARINER_WS_REVALIDATE_MS', 60_000, 100, 3_600_000),
      initTimeoutMs: intSetting(env, 'MARINER_WS_INIT_TIMEOUT_MS', 3_000, 100, 600_000),
    },
    jobs: {
      dispatchIntervalMs: intSetting(env, 'MARINER_JOB_DISPATCH_INTERVAL_MS', 5_000, 100, 600_000),
      localTrainerCommand: commandSetting(env, 'MARINER_LOCAL_TRAINER_COMMAND'),
      batchImages: imagePresetsSetting(env, 'MARINER_BATCH_IMAGES', { 'pytorch-2.1': 'pytorch/pytorch:2.1.2-cuda12.1-cudnn8-runtime' }),
      notebookImages: imagePresetsSetting(env, 'MARINER_NOTEBOOK_IMAGES', {
        'jupyter-lab-base': 'quay.io/jupyter/base-notebook:latest',
        'jupyter-lab-full': 'quay.io/jupyter/scipy-notebook:latest',
      }),
      localBatchJobs: boolSetting(env, 'MARINER_LOCAL_BATCH_JOBS', false),
      rescheduleAfterSeconds: intSetting(env, 'MARINER_JOB_RESCHEDULE_AFTER_SECONDS', 1800, 5, 7 * 24 * 3600),
    },
    sessions: {
      heartbeatIntervalMs: intSetting(env, 'MARINER_TUNNEL_HEARTBEAT_MS', 10_000, 100, 600_000),
      heartbeatTimeoutMs: intSetting(env, 'MARINER_TUNNEL_HEARTBEAT_TIMEOUT_MS', 20_000, 100, 600_000),
      revalidateIntervalMs: intSetting(env, 'MARINER_TUNNEL_REVALIDATE_MS', 30_000, 100, 3_600_000),
      authCacheMs: intSetting(env, 'MARINER_SESSIONS_AUTH_CACHE_MS', 5_000, 0, 300_000),
      peerPort: stringSetting(env, 'MARINER_SESSIONS_PEER_PORT') === undefined ? undefined : intSetting(env, 'MARINER_SESSIONS_PEER_PORT', 0, 0, 65535),
      peerAddress: peerAddressSetting(env),
      peerHeartbeatMs: intSetting(env, 'MARINER_SESSIONS_PEER_HEARTBEAT_MS', 5_000, 100, 600_000),
      allowExec: boolSetting(env, 'MARINER_SESSIONS_EXEC', false),
    },
  };
  return { ...base, ...overrides };
}

const NAMESPACE_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** MARINER_RESERVED_NAMESPACES: Kubernetes namespace names, comma-separated. */
function reservedNamespacesSetting(env: Env): string[] {
  const names = (stringSetting(env, 'MARINER_RESERVED_NAMESPACES') ?? '')
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '');
  const bad = names.find((name) => !NAMESPACE_NAME.test(name));
  if (bad !== undefined)
    throw new ConfigError(`MARINER_RESERVED_NAMESPACES must list Kubernetes namespace names, comma-separated; "${bad.slice(0, 80)}" is not one`);
  return [...new Set(names)];
}

/** MARINER_DEFAULT_CLUSTER_KEY: a registration key as registerCluster makes them (clusterkey- and at least 32 more characters). */
function defaultClusterKeySetting(env: Env): string | undefined {
  const key = stringSetting(env, 'MARINER_DEFAULT_CLUSTER_KEY');
  if (key !== undefined && !/^clusterkey-[A-Za-z0-9_-]{32,}$/.test(key)) {
    throw new ConfigError('MARINER_DEFAULT_CLUSTER_KEY must be clusterkey- followed by at least 32 letters, digits, - or _ (the chart generates one)');
  }
  return key;
}

/** MARINER_SESSIONS_PEER_ADDRESS, or POD_IP with the peer port (the chart sets POD_IP from the downward API). */
function peerAddressSetting(env: Env): string | undefined {
  const explicit = stringSetting(env, 'MARINER_SESSIONS_PEER_ADDRESS');
  if (explicit) {
    if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(explicit))
      throw new ConfigError(`MARINER_SESSIONS_PEER_ADDRESS must be host:port, got "${explicit}"`);
    return explicit;
  }
  const podIp = stringSetting(env, 'POD_IP');
  const port = stringSetting(env, 'MARINER_SESSIONS_PEER_PORT');
  if (!podIp || !port || port === '0') return undefined;
  return `${podIp.includes(':') ? `[${podIp}]` : podIp}:${port}`;
}

/** The default price table of cost budgets: a JSON object of model id → {input, output} whole USD micro-units per 1M tokens. */
function modelPricesSetting(env: Env, name: string): Record<string, { inputMicrosPerMillion: number; outputMicrosPerMillion: number }> {
  const raw = stringSetting(env, name);
  if (raw === undefined) return {};
  const refused = new ConfigError(`${name} must be a JSON object: model id → {"input": N, "output": N} (whole USD micro-units per 1M tokens)`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw refused;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw refused;
  const whole = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  const prices: Record<string, { inputMicrosPerMillion: number; outputMicrosPerMillion: number }> = {};
  for (const [model, price] of Object.entries(parsed as Record<string, unknown>)) {
    const { input, output } = (price ?? {}) as { input?: unknown; output?: unknown };
    if (model === '' || !whole(input) || !whole(output)) throw refused;
    prices[model] = { inputMicrosPerMillion: input, outputMicrosPerMillion: output };
  }
  return prices;
}

/** Image presets: the defaults (LLMariner's), or those given as a JSON object of name → image. */
function imagePresetsSetting(env: Env, name: string, defaults: Record<string, string>): Record<string, string> {
  const raw = stringSetting(env, name);
  if (raw === undefined) return defaults;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new ConfigError(`${name} must be a JSON object of preset name → image`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || !Object.values(parsed).every((v) => typeof v === 'string' && v !== '')) {
    throw new ConfigError(`${name} must be a JSON object of preset name → image`);
  }
  return parsed as Record<string, string>;
}

/** A command line: a JSON array of strings, or words separated by spaces. */
export function commandSetting(env: Env, name: string): string[] | undefined {
  const raw = stringSetting(env, name);
  if (raw === undefined) return undefined;
  if (!raw.trimStart().startsWith('[')) return raw.trim().split(/\s+/);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new ConfigError(`${name} starts with [ but is not a JSON array of strings`);
  }
  if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every((part) => typeof part === 'string')) {
    throw new ConfigError(`${name} must be a non-empty JSON array of strings`);
  }
  return parsed as string[];
}

/** The range of each scaler setting: [min, max, integer]. */
const SCALER_RANGES: Record<keyof ScalerSettings, [number, number, boolean]> = {
  targetInFlight: [0.01, 100_000, false],
  minReplicas: [0, 1000, true],
  maxReplicas: [1, 1000, true],
  maxScaleUpRate: [1, 100, false],
  maxScaleDownRate: [0, 1, false],
  metricsWindowSeconds: [1, 3600, true],
  scaleToZeroGraceSeconds: [0, 7 * 24 * 3600, true],
};

const SCALER_ENV: Record<keyof ScalerSettings, string> = {
  targetInFlight: 'MARINER_AUTOSCALER_TARGET_IN_FLIGHT',
  minReplicas: 'MARINER_AUTOSCALER_MIN_REPLICAS',
  maxReplicas: 'MARINER_AUTOSCALER_MAX_REPLICAS',
  maxScaleUpRate: 'MARINER_AUTOSCALER_MAX_SCALE_UP_RATE',
  maxScaleDownRate: 'MARINER_AUTOSCALER_MAX_SCALE_DOWN_RATE',
  metricsWindowSeconds: 'MARINER_AUTOSCALER_METRICS_WINDOW_SECONDS',
  scaleToZeroGraceSeconds: 'MARINER_AUTOSCALER_SCALE_TO_ZERO_GRACE_SECONDS',
};

/** MARINER_AUTOSCALER_*: the defaults, and per-model overrides in MARINER_AUTOSCALER_MODELS. */
function autoscalerSetting(env: Env): AutoscalerConfig {
  const setting = (key: keyof ScalerSettings, fallback: number) => {
    const [min, max, integer] = SCALER_RANGES[key];
    return integer ? intSetting(env, SCALER_ENV[key], fallback, min, max) : numberSetting(env, SCALER_ENV[key], fallback, min, max);
  };
  const defaults: ScalerSettings = {
    targetInFlight: setting('targetInFlight', 4),
    minReplicas: setting('minReplicas', 1),
    maxReplicas: setting('maxReplicas', 4),
    maxScaleUpRate: setting('maxScaleUpRate', 3),
    maxScaleDownRate: setting('maxScaleDownRate', 0.5),
    metricsWindowSeconds: setting('metricsWindowSeconds', 60),
    scaleToZeroGraceSeconds: setting('scaleToZeroGraceSeconds', 600),
  };
  if (defaults.minReplicas > defaults.maxReplicas) throw new ConfigError('MARINER_AUTOSCALER_MIN_REPLICAS must not exceed MARINER_AUTOSCALER_MAX_REPLICAS');
  const models: Record<string, Partial<ScalerSettings>> = {};
  const raw = stringSetting(env, 'MARINER_AUTOSCALER_MODELS');
  if (raw !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      throw new ConfigError('MARINER_AUTOSCALER_MODELS must be a JSON object: model id → scaler settings');
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new ConfigError('MARINER_AUTOSCALER_MODELS must be a JSON object: model id → scaler settings');
    for (const [modelId, value] of Object.entries(parsed)) {
      if (typeof value !== 'object' || value === null || Array.isArray(value))
        throw new ConfigError(`MARINER_AUTOSCALER_MODELS["${modelId}"] must be an object of scaler settings`);
      const override: Partial<ScalerSettings> = {};
      for (const [key, setting] of Object.entries(value as Record<string, unknown>)) {
        const range = SCALER_RANGES[key as keyof ScalerSettings];
        if (!range) throw new ConfigError(`MARINER_AUTOSCALER_MODELS["${modelId}"].${key} is not a scaler setting (${Object.keys(SCALER_RANGES).join(', ')})`);
        const [min, max, integer] = range;
        if (typeof setting !== 'number' || setting < min || setting > max || (integer && !Number.isInteger(setting))) {
          throw new ConfigError(`MARINER_AUTOSCALER_MODELS["${modelId}"].${key} must be ${integer ? 'an integer' : 'a number'} between ${min} and ${max}`);
        }
        override[key as keyof ScalerSettings] = setting;
      }
      const merged = { ...defaults, ...override };
      if (merged.minReplicas > merged.maxReplicas) throw new ConfigError(`MARINER_AUTOSCALER_MODELS["${modelId}"]: minReplicas must not exceed maxReplicas`);
      models[modelId] = override;
    }
  }
  const schedules: Record<string, ScalingSchedule[]> = {};
  const rawSchedules = stringSetting(env, 'MARINER_AUTOSCALER_SCHEDULES');
  if (rawSchedules !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(rawSchedules);
    } catch {
      parsed = undefined;
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new ConfigError('MARINER_AUTOSCALER_SCHEDULES must be a JSON object: model id → list of schedules');
    for (const [modelId, value] of Object.entries(parsed)) {
      try {
        schedules[modelId] = parseSchedules(value, `MARINER_AUTOSCALER_SCHEDULES["${modelId}"]`);
      } catch (error) {
        throw new ConfigError((error as Error).message);
      }
    }
  }
  return {
    enabled: boolSetting(env, 'MARINER_AUTOSCALER_ENABLED', false),
    syncPeriodMs: intSetting(env, 'MARINER_AUTOSCALER_SYNC_PERIOD_MS', 2_000, 50, 600_000),
    defaults,
    models,
    schedules,
  };
}

/** MARINER_VECTOR_INDEX (auto | pgvector | milvus) and the ingestion settings. */
function vectorStoresSetting(env: Env): VectorStoresConfig {
  const index = stringSetting(env, 'MARINER_VECTOR_INDEX') ?? 'auto';
  if (index !== 'auto' && index !== 'pgvector' && index !== 'milvus') {
    throw new ConfigError(`MARINER_VECTOR_INDEX must be auto, pgvector or milvus, got "${index}"`);
  }
  const address = stringSetting(env, 'MARINER_MILVUS_ADDRESS');
  if (index === 'milvus' && !address) throw new ConfigError('MARINER_VECTOR_INDEX=milvus needs MARINER_MILVUS_ADDRESS (host:port)');
  const metric = stringSetting(env, 'MARINER_VECTOR_METRIC') ?? 'cosine';
  if (metric !== 'cosine' && metric !== 'l2') throw new ConfigError(`MARINER_VECTOR_METRIC must be cosine or l2, got "${metric}"`);
  return {
    index,
    milvus: {
      address,
      token: stringSetting(env, 'MARINER_MILVUS_TOKEN'),
      database: stringSetting(env, 'MARINER_MILVUS_DATABASE'),
      ssl: boolSetting(env, 'MARINER_MILVUS_SSL', false),
    },
    metric,
    defaultEmbeddingModel: stringSetting(env, 'MARINER_EMBEDDING_MODEL') ?? 'mariner-demo',
    embeddingBatchSize: intSetting(env, 'MARINER_EMBEDDING_BATCH_SIZE', 32, 1, 2048),
    ingestionConcurrency: intSetting(env, 'MARINER_INGESTION_CONCURRENCY', 2, 1, 64),
    ingestionLeaseSeconds: intSetting(env, 'MARINER_INGESTION_LEASE_SECONDS', 60, 2, 3600),
  };
}

/** MARINER_BATCH_* settings; a tenant's cap below one batch's would leave the batch's cap unreachable. */
function batchesSetting(env: Env): BatchesConfig {
  const concurrencyPerBatch = intSetting(env, 'MARINER_BATCH_CONCURRENCY_PER_BATCH', 4, 1, 1024);
  const concurrencyPerTenant = intSetting(env, 'MARINER_BATCH_CONCURRENCY_PER_TENANT', 8, 1, 10_000);
  if (concurrencyPerTenant < concurrencyPerBatch) {
    throw new ConfigError(
      `MARINER_BATCH_CONCURRENCY_PER_TENANT (${concurrencyPerTenant}) must be at least MARINER_BATCH_CONCURRENCY_PER_BATCH (${concurrencyPerBatch})`,
    );
  }
  return {
    concurrencyPerBatch,
    concurrencyPerTenant,
    concurrencyPerReplica: intSetting(env, 'MARINER_BATCH_CONCURRENCY_PER_REPLICA', 16, 1, 10_000),
    leaseSeconds: intSetting(env, 'MARINER_BATCH_LEASE_SECONDS', 120, 2, 3600),
    completionWindowSeconds: intSetting(env, 'MARINER_BATCH_COMPLETION_WINDOW_SECONDS', 86_400, 1, 86_400),
    pollIntervalMs: intSetting(env, 'MARINER_BATCH_POLL_MS', 1_000, 10, 60_000),
    maxRequests: intSetting(env, 'MARINER_BATCH_MAX_REQUESTS', 50_000, 1, 1_000_000),
    yieldToInteractive: boolSetting(env, 'MARINER_BATCH_YIELD_TO_INTERACTIVE', true),
  };
}

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** MARINER_OBJECT_STORE=filesystem (default, under the data dir) or s3 with MARINER_S3_* settings. */
function objectStoreSetting(env: Env, dataDir: string): ObjectStoreConfig {
  const driver = stringSetting(env, 'MARINER_OBJECT_STORE') ?? 'filesystem';
  if (driver === 'filesystem') {
    return { driver, dir: path.resolve(stringSetting(env, 'MARINER_OBJECT_STORE_DIR') ?? path.join(dataDir, 'objects')) };
  }
  if (driver !== 's3') throw new ConfigError(`MARINER_OBJECT_STORE must be filesystem or s3, got "${driver}"`);
  const bucket = stringSetting(env, 'MARINER_S3_BUCKET');
  if (!bucket || !BUCKET.test(bucket)) throw new ConfigError('MARINER_S3_BUCKET must name a bucket (3-63 lowercase letters, digits, dots, dashes)');
  const endpoint = stringSetting(env, 'MARINER_S3_ENDPOINT');
  if (endpoint !== undefined && !/^https?:\/\//.test(endpoint)) throw new ConfigError('MARINER_S3_ENDPOINT must be an http(s) URL');
  const accessKeyId = stringSetting(env, 'MARINER_S3_ACCESS_KEY_ID');
  const secretAccessKey = stringSetting(env, 'MARINER_S3_SECRET_ACCESS_KEY');
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    throw new ConfigError('MARINER_S3_ACCESS_KEY_ID and MARINER_S3_SECRET_ACCESS_KEY go together');
  }
  const createBucket = stringSetting(env, 'MARINER_S3_CREATE_BUCKET') ?? 'auto';
  if (createBucket !== 'auto' && createBucket !== 'never') throw new ConfigError(`MARINER_S3_CREATE_BUCKET must be auto or never, got "${createBucket}"`);
  return {
    driver,
    bucket,
    endpoint,
    region: stringSetting(env, 'MARINER_S3_REGION') ?? 'us-east-1',
    forcePathStyle: boolSetting(env, 'MARINER_S3_FORCE_PATH_STYLE', endpoint !== undefined),
    accessKeyId,
    secretAccessKey,
    prefix: (stringSetting(env, 'MARINER_S3_PREFIX') ?? 'mariner').replace(/^\/+|\/+$/g, ''),
    createBucket,
  };
}

/** Reads a JSON file named by a setting, with the setting's name in any error. */
export function readJsonSetting(name: string, file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new ConfigError(`${name}: cannot read JSON from ${file}: ${(error as Error).message}`);
  }
}
