/**
 * The settings reference, docs/reference/settings.md, generated from the code (`npm run docs:settings`):
 *
 * - the settings `loadConfig` reads (lib/config.ts): every environment variable named there; its default,
 *   what it accepts and where it lands in MarinerConfig are found by calling `loadConfig` itself (the
 *   default from an empty environment, the accepted values from the error a bad value gets, the field
 *   from what a good value changes); its meaning is the documentation comment of that field;
 * - which components take each one, from each component's `settings` in the registry (bin/components.ts);
 * - the settings of `mariner serve` and `mariner agent` that are read outside lib/config.ts, listed in
 *   PROCESS_SETTINGS below: each must still be named in the source file given, or generation fails.
 *
 * test/docsSite.test.ts fails when the committed page differs from what this writes.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { COMPONENTS } from '../../bin/components.js';
import type { AnyComponent } from '../../lib/component.js';
import { loadConfig, type MarinerConfig } from '../../lib/config.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const SETTINGS_PAGE = path.join(ROOT, 'docs/reference/settings.md');
const CONFIG_SOURCE = path.join(ROOT, 'lib/config.ts');

type Env = Record<string, string>;

/** Environments a setting only counts in (the S3 settings need the S3 store, ...); tried in order. */
const CONTEXTS: Env[] = [
  {},
  { MARINER_OBJECT_STORE: 's3', MARINER_S3_BUCKET: 'probe-bucket' },
  { MARINER_OBJECT_STORE: 's3', MARINER_S3_BUCKET: 'probe-bucket', MARINER_S3_ACCESS_KEY_ID: 'probe-id', MARINER_S3_SECRET_ACCESS_KEY: 'probe-secret' },
  { MARINER_OIDC_AUDIENCE: 'probe-audience' },
  { MARINER_SESSIONS_PEER_PORT: '8090' },
];

/** Values tried to see what a setting changes: the first that loads and changes something tells. */
const PROBES = [
  '0',
  '2',
  '7',
  '64',
  '4096',
  '0.25',
  'true',
  'false',
  'milvus',
  'pgvector',
  'l2',
  'production',
  's3',
  'probe-value',
  'json',
  'https://probe.example',
  'postgres://probe.example/db',
  'sk-probeprobeprobeprobeprobe',
  'clusterkey-probeprobeprobeprobeprobeprobeprobeprobe',
  'filesystem',
  'never',
  'probe.example:1234',
  '{"probe":"image"}',
  '{"probe-model":{"minReplicas":0}}',
  '{"probe-model":{"input":1,"output":2}}',
  '{"probe-model":[{"cron":"0 9 * * *","minReplicas":1,"maxReplicas":2}]}',
  '["probe","argv"]',
  'fd00::1',
];

/** Section titles by the first part of the config path. */
const SECTIONS: [string, string][] = [
  ['environment', 'General'],
  ['port', 'General'],
  ['host', 'General'],
  ['dataDir', 'General'],
  ['databaseUrl', 'General'],
  ['adminApiKey', 'General'],
  ['adminEmail', 'General'],
  ['internalTokenSecret', 'General'],
  ['internalTokenTtlSeconds', 'General'],
  ['logLevel', 'General'],
  ['logFormat', 'General'],
  ['introspection', 'GraphQL'],
  ['limits', 'GraphQL'],
  ['subscriptions', 'GraphQL'],
  ['oidc', 'Authentication'],
  ['roleScopesFile', 'Authentication'],
  ['objectStore', 'Object store'],
  ['files', 'Files'],
  ['models', 'Models'],
  ['huggingFace', 'Models'],
  ['clusters', 'Clusters and tunnels'],
  ['sessions', 'Clusters and tunnels'],
  ['inference', 'Inference'],
  ['autoscaler', 'Autoscaling'],
  ['vectorStores', 'Vector stores'],
  ['batches', 'Batches (OpenAI Batch API)'],
  ['jobs', 'Jobs'],
];

/**
 * Meanings of the fields lib/config.ts has no documentation comment for (a comment there wins, so these
 * can move into it). Without either, a field shows its parent's comment.
 */
const FALLBACK_MEANINGS: Record<string, string> = {
  logLevel: 'The pino log level: trace, debug, info, warn, error.',
  introspection: 'GraphQL introspection and the explorer page; on by default in development.',
  'limits.maxDepth': 'Deepest GraphQL operation (HTTP and WebSocket alike).',
  'limits.maxAliases': 'Most aliases in one GraphQL operation.',
  'limits.maxTokens': 'Most tokens in one GraphQL document.',
  'limits.maxCost': 'Highest cost of one GraphQL operation.',
  'limits.maxDirectives': 'Most directives in one GraphQL operation.',
  'inference.rateLimitTokensPerMinute': 'Per API key: tokens (prompt + completion) per minute; 0 = unlimited.',
  'subscriptions.maxPerUser': "Operations open at once for one user across a gateway replica's connections.",
  'autoscaler.defaults.maxReplicas': 'Most replicas of a model.',
};

/** Settings read outside lib/config.ts: by `mariner serve`, `mariner agent` and the agent's executors. */
const PROCESS_SETTINGS: { name: string; source: string; default: string; meaning: string }[] = [
  {
    name: 'MARINER_CONFIG_FILE',
    source: 'bin/serveConfig.ts',
    default: '—',
    meaning: '`mariner serve`: a JSON file of settings by these names; the environment wins; an unknown name refuses the start',
  },
  {
    name: 'MARINER_SUBGRAPH_<NAME>_URL',
    source: 'bin/serveConfig.ts',
    default: '—',
    meaning: '`mariner serve`: where each subgraph a component calls runs (the gateway: all)',
  },
  {
    name: 'MARINER_GATEWAY_URL',
    source: 'bin/serveConfig.ts',
    default: '—',
    meaning: '`mariner serve`: where the gateway is, for components that call it (sessions)',
  },
  { name: 'MARINER_OPS_PORT', source: 'bin/serveConfig.ts', default: '9090', meaning: '`mariner serve`: the port of `/healthz`, `/readyz` and `/metrics`' },
  {
    name: 'MARINER_SHUTDOWN_DELAY_MS',
    source: 'bin/serveConfig.ts',
    default: '5000',
    meaning: '`mariner serve`: on SIGTERM, how long `/readyz` says stopping while traffic is still served',
  },
  {
    name: 'MARINER_DRAIN_TIMEOUT_MS',
    source: 'bin/serveConfig.ts',
    default: '20000',
    meaning: 'on SIGINT/SIGTERM, how long requests and streams in flight get to finish',
  },
  { name: 'MARINER_CONTROL_PLANE_URL', source: 'bin/mariner.ts', default: '—', meaning: '`mariner agent`: the control plane URL (`--control-plane`)' },
  { name: 'MARINER_REGISTRATION_KEY', source: 'bin/mariner.ts', default: '—', meaning: "`mariner agent`: the cluster's registration key" },
  { name: 'MARINER_REGISTRATION_KEY_FILE', source: 'bin/mariner.ts', default: '—', meaning: '`mariner agent`: a file holding it (`--registration-key-file`)' },
  {
    name: 'MARINER_AGENT_EXECUTOR',
    source: 'bin/mariner.ts',
    default: 'kubernetes in a pod, else local',
    meaning: '`mariner agent`: where work runs (`--executor`)',
  },
  {
    name: 'MARINER_AGENT_TRANSPORT',
    source: 'bin/mariner.ts',
    default: 'auto',
    meaning: '`mariner agent`: `auto` (the Upgrade, or the WebSocket once a proxy shows it cannot pass it), `upgrade` or `websocket` (`--transport`)',
  },
  { name: 'MARINER_AGENT_TUNNELS', source: 'bin/mariner.ts', default: '1', meaning: '`mariner agent`: tunnels to keep open, 1 to 16 (`--tunnels`)' },
  {
    name: 'KUBECONFIG',
    source: 'bin/mariner.ts',
    default: 'in-cluster, then ~/.kube/config',
    meaning: '`mariner agent`: Kubernetes credentials (`--kubeconfig`)',
  },
  {
    name: 'MARINER_AGENT_OPS_PORT',
    source: 'bin/agentOps.ts',
    default: '(off)',
    meaning: '`mariner agent`: the port of `/healthz`, `/readyz` (ready while a tunnel is up) and `/metrics`',
  },
  { name: 'MARINER_RUNTIMES', source: 'agent/kubernetesExecutor.ts', default: 'on', meaning: 'Kubernetes agents: `off` for a cluster that runs jobs only' },
  {
    name: 'MARINER_RUNTIME_NAMESPACE',
    source: 'agent/kubernetesExecutor.ts',
    default: "the agent's namespace",
    meaning: 'Kubernetes agents: the namespace of inference runtimes',
  },
  {
    name: 'MARINER_RUNTIME_S3_SECRET',
    source: 'agent/kubernetesExecutor.ts',
    default: '—',
    meaning: 'Kubernetes agents: the Secret runtime pods copy weights from S3 with',
  },
  {
    name: 'MARINER_RUNTIME_IMAGE_',
    source: 'agent/kubernetesExecutor.ts',
    default: 'built in',
    meaning: 'Kubernetes agents: `MARINER_RUNTIME_IMAGE_{VLLM,LLAMA_CPP,LLAMA_CPP_CUDA,OLLAMA,S3_COPIER}`, the runtime images',
  },
  {
    name: 'MARINER_FINE_TUNING_IMAGE',
    source: 'agent/kubernetesExecutor.ts',
    default: "LLMariner's fine-tuning image",
    meaning: 'Kubernetes agents: the trainer image',
  },
  {
    name: 'MARINER_FINE_TUNING_COMMAND',
    source: 'agent/kubernetesExecutor.ts',
    default: 'generated per job',
    meaning: "Kubernetes agents: the trainer's command in that image (a JSON array or words)",
  },
  {
    name: 'MARINER_KUEUE_DEFAULT_QUEUE',
    source: 'agent/kubernetesExecutor.ts',
    default: '—',
    meaning: 'Kubernetes agents: the Kueue queue of projects that name none',
  },
  {
    name: 'MARINER_KUEUE_QUEUES',
    source: 'agent/kubernetesExecutor.ts',
    default: 'on',
    meaning: "Kubernetes agents: `off` stops the agent keeping Kueue's queues of the projects' GPU quotas (docs/quotas.md)",
  },
  {
    name: 'MARINER_DCGM_EXPORTER_SELECTOR',
    source: 'agent/kubernetes/dcgm.ts',
    default: '`app.kubernetes.io/name=dcgm-exporter`',
    meaning: "Kubernetes agents: label selector of the NVIDIA DCGM exporter's pods, read for GPU utilisation (empty: none)",
  },
  {
    name: 'MARINER_DCGM_EXPORTER_NAMESPACE',
    source: 'agent/kubernetes/dcgm.ts',
    default: 'all namespaces',
    meaning: 'Kubernetes agents: believe exporter pods in this namespace only (set it where users may create pods)',
  },
  {
    name: 'MARINER_DCGM_EXPORTER_URLS',
    source: 'agent/kubernetes/dcgm.ts',
    default: '—',
    meaning: 'Kubernetes agents: fixed DCGM exporter metrics URLs, comma-separated, instead of discovery',
  },
  {
    name: 'MARINER_WANDB_API_KEY_SECRET',
    source: 'agent/kubernetesExecutor.ts',
    default: '—',
    meaning: 'Kubernetes agents: the Secret (in each jobs namespace) holding the W&B API key',
  },
  { name: 'MARINER_WANDB_API_KEY_SECRET_KEY', source: 'agent/kubernetesExecutor.ts', default: '`apiKey`', meaning: 'Kubernetes agents: its key' },
];

/** The environment variables lib/config.ts names, in order of first appearance. */
export function configSettingNames(source = readFileSync(CONFIG_SOURCE, 'utf8')): string[] {
  const names = new Set<string>();
  for (const match of source.matchAll(/'(MARINER_[A-Z0-9_]+|DATABASE_URL|HF_ENDPOINT|HF_TOKEN|POD_IP)'/g)) names.add(match[1]!);
  return [...names];
}

/** Leaf values of a config, by dotted path (arrays and records of presets count as one value). */
function leaves(value: unknown, prefix = '', out = new Map<string, string>()): Map<string, string> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length > 0 && !isRecordSetting(prefix)) {
    for (const [key, inner] of Object.entries(value)) leaves(inner, prefix ? `${prefix}.${key}` : key, out);
  } else out.set(prefix, JSON.stringify(value));
  return out;
}

/** Records whose keys are data (image presets, per-model settings), shown as one value. */
function isRecordSetting(configPath: string): boolean {
  return ['jobs.batchImages', 'jobs.notebookImages', 'autoscaler.models', 'autoscaler.schedules', 'inference.modelPrices'].includes(configPath);
}

function tryLoad(env: Env): MarinerConfig | Error {
  try {
    return loadConfig(env);
  } catch (error) {
    return error as Error;
  }
}

interface Found {
  name: string;
  paths: string[];
  context: Env;
  defaultValue: string | undefined;
  accepts: string | undefined;
}

/** What one setting changes, its default and what it accepts, found by calling loadConfig. */
function probe(name: string): Found {
  for (const context of CONTEXTS) {
    const base = tryLoad(context);
    if (base instanceof Error) continue;
    const before = leaves(base);
    const paths = new Set<string>();
    for (const value of PROBES) {
      const loaded = tryLoad({ ...context, [name]: value });
      if (loaded instanceof Error) continue;
      for (const [key, after] of leaves(loaded)) if (before.get(key) !== after) paths.add(key);
    }
    // A setting that only takes effect with another one (POD_IP with the peer port) changes nothing alone.
    if (paths.size === 0) continue;
    const bad = tryLoad({ ...context, [name]: '!not valid!' });
    const accepts = bad instanceof Error ? bad.message.replace(/, got "!not valid!"$/, '') : undefined;
    const sorted = [...paths].sort();

    // The default is what an empty environment gives (a setting only read with another has none).
    const main = sorted.find((p) => p.endsWith('.driver')) ?? sorted[0]!;
    const defaultValue = leaves(loadConfig({})).get(main);
    return { name, paths: [main, ...sorted.filter((p) => p !== main)], context, defaultValue, accepts };
  }
  return { name, paths: [], context: {}, defaultValue: undefined, accepts: undefined };
}

/** Documentation comments of MarinerConfig's fields (and the interfaces it uses), by dotted path. */
export function fieldDocs(source = readFileSync(CONFIG_SOURCE, 'utf8')): Map<string, string> {
  const file = ts.createSourceFile('config.ts', source, ts.ScriptTarget.ES2022, true);
  const declarations = new Map<string, ts.InterfaceDeclaration | ts.TypeAliasDeclaration>();
  file.forEachChild((node) => {
    if (ts.isInterfaceDeclaration(node) || ts.isTypeAliasDeclaration(node)) declarations.set(node.name.text, node);
  });
  const own = new Map<string, string>();
  const inheritedDocs = new Map<string, string>();
  const docOf = (node: ts.Node): string | undefined => {
    const text = ts
      .getJSDocCommentsAndTags(node)
      .filter(ts.isJSDoc)
      .map((doc) => (typeof doc.comment === 'string' ? doc.comment : (doc.comment?.map((part) => part.text).join('') ?? '')))
      .join(' ')
      .replace(/\s+/g, ' ')
      .trim();
    return text === '' ? undefined : text;
  };
  const members = (type: ts.TypeNode | ts.InterfaceDeclaration | ts.TypeAliasDeclaration | undefined): readonly ts.TypeElement[] => {
    if (!type) return [];
    if (ts.isInterfaceDeclaration(type)) return type.members;
    if (ts.isTypeAliasDeclaration(type)) return members(type.type);
    if (ts.isTypeLiteralNode(type)) return type.members;
    if (ts.isUnionTypeNode(type)) return type.types.flatMap((t) => members(t));
    if (ts.isTypeReferenceNode(type) && ts.isIdentifier(type.typeName)) return members(declarations.get(type.typeName.text));
    return [];
  };
  const walk = (owner: ts.TypeNode | ts.InterfaceDeclaration | ts.TypeAliasDeclaration | undefined, prefix: string, inherited: string | undefined) => {
    for (const member of members(owner)) {
      if (!ts.isPropertySignature(member) || !member.name || !ts.isIdentifier(member.name)) continue;
      const key = prefix ? `${prefix}.${member.name.text}` : member.name.text;
      const doc = docOf(member);
      if (doc && !own.has(key)) own.set(key, doc);
      if (inherited && !inheritedDocs.has(key)) inheritedDocs.set(key, inherited);
      walk(member.type, key, doc ?? inherited);
    }
  };
  walk(declarations.get('MarinerConfig'), '', undefined);
  const docs = new Map<string, string>();
  for (const key of new Set([...own.keys(), ...inheritedDocs.keys(), ...Object.keys(FALLBACK_MEANINGS)])) {
    docs.set(key, own.get(key) ?? FALLBACK_MEANINGS[key] ?? inheritedDocs.get(key)!);
  }
  return docs;
}

/** The components whose `settings` take a config path, found by planting a marker there. */
function componentsTaking(configPath: string, base: MarinerConfig): string[] {
  const marker = 'settings-reference-marker-7f3a';
  const names: string[] = [];
  for (const component of COMPONENTS as readonly AnyComponent[]) {
    const config = structuredClone(base);
    if (component.settings(config) === config) continue; // the whole configuration (the gateway): says nothing
    const parts = configPath.split('.');
    let holder = config as unknown as Record<string, unknown>;
    for (const part of parts.slice(0, -1)) holder = holder[part] as Record<string, unknown>;
    holder[parts.at(-1)!] = marker;
    if (JSON.stringify(component.settings(config) ?? null).includes(marker)) names.push(component.name);
  }
  return names;
}

/** Shown in the page: paths relative to the repository, JSON values plainly. */
function shownDefault(raw: string | undefined, name: string): string {
  if (raw === undefined || raw === 'null') return '—';
  let value: unknown = JSON.parse(raw);
  if (typeof value === 'string') {
    const cwd = process.cwd();
    if (value.startsWith(cwd)) value = `.${value.slice(cwd.length)}`;
    if (name === 'MARINER_DATA_DIR' || name === 'MARINER_OBJECT_STORE_DIR') value = String(value).replace(/^\.\/?/, './');
  }
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text === '' ? '—' : `\`${text.replace(/\|/g, '\\|')}\``;
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** The page. */
export function settingsReference(): string {
  const docs = fieldDocs();
  const base = loadConfig({});
  const sections = new Map<string, string[]>();
  const unplaced: string[] = [];
  for (const name of configSettingNames()) {
    const found = probe(name);
    if (found.paths.length === 0) {
      unplaced.push(name);
      continue;
    }
    const first = found.paths[0]!;
    const section = SECTIONS.find(([key]) => first === key || first.startsWith(`${key}.`))?.[1] ?? 'Other';
    const meaning = [...new Set(found.paths.map((p) => docs.get(p)).filter((d): d is string => d !== undefined))].join(' ') || '—';
    const components = [...new Set(found.paths.flatMap((p) => componentsTaking(p, base)))];
    const needs = Object.entries(found.context)
      .filter(([key]) => key !== name)
      .map(([k, v]) => `${k}=${v}`)
      .filter((s) => !s.includes('probe'))
      .join(', ');
    const row = [
      `\`${name}\``,
      shownDefault(found.defaultValue, name),
      cell(meaning + (needs ? ` (with ${needs})` : '')),
      cell(found.accepts ?? 'any text'),
      components.length > 0 ? components.join(', ') : 'host, gateway',
      found.paths.map((p) => `\`${p}\``).join(', '),
    ];
    const rows = sections.get(section) ?? [];
    rows.push(`| ${row.join(' | ')} |`);
    sections.set(section, rows);
  }
  const order = [...new Set(SECTIONS.map(([, title]) => title)), 'Other'];
  const out: string[] = [
    '<!-- Generated by `npm run docs:settings` (test/docs/settingsReference.ts) from lib/config.ts and the component registry. Do not edit: test/docsSite.test.ts fails when it is stale. -->',
    '',
    '# Settings reference',
    '',
    'Every setting Mariner reads, from the environment (and, under `mariner serve`, from the JSON file named by',
    '`MARINER_CONFIG_FILE`, by the same names; the environment wins). A bad value stops the start with a message',
    'naming the setting, as in the *accepts* column. *Taken by* names the components (`mariner serve <component>`)',
    'whose settings include it; *host, gateway* means the process hosting the components (and the gateway, which takes',
    'the whole configuration) reads it. *Field* is where it lands in',
    '`MarinerConfig` (lib/config.ts), whose documentation the *meaning* column is. Task-oriented explanations are in',
    'the guides: [operations](../operations.md), [autoscaling](../autoscaling.md),',
    '[vector stores](../vector-stores-and-retrieval.md), [clusters and agents](../clusters-and-agents.md).',
    '',
  ];
  for (const title of order) {
    const rows = sections.get(title);
    if (!rows) continue;
    out.push(`## ${title}`, '', '| setting | default | meaning | accepts | taken by | field |', '|---|---|---|---|---|---|', ...rows, '');
  }
  out.push(
    '## `mariner serve` and `mariner agent`',
    '',
    'Read by the process itself rather than lib/config.ts (`mariner help` lists them too).',
    '',
    '| setting | default | meaning | read in |',
    '|---|---|---|---|',
  );
  for (const setting of PROCESS_SETTINGS) {
    const source = readFileSync(path.join(ROOT, setting.source), 'utf8');
    const named = setting.name.split('<')[0]!.replace(/_+$/, '');
    if (!source.includes(named))
      throw new Error(`${setting.name} is no longer named in ${setting.source}: update PROCESS_SETTINGS in test/docs/settingsReference.ts`);
    out.push(`| \`${setting.name}\` | ${setting.default} | ${cell(setting.meaning)} | \`${setting.source}\` |`);
  }
  out.push('');
  if (unplaced.length > 0) {
    out.push(
      '## Read only together with another setting',
      '',
      ...unplaced.map(
        (name) =>
          `- \`${name}\`${name === 'POD_IP' ? ': with `MARINER_SESSIONS_PEER_PORT`, the peer address other replicas reach (set by the chart from the downward API)' : ''}`,
      ),
      '',
    );
  }
  return out.join('\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const page = settingsReference();
  writeFileSync(SETTINGS_PAGE, page);
  console.log(`wrote ${path.relative(ROOT, SETTINGS_PAGE)} (${page.split('\n').filter((l) => l.startsWith('| `')).length} settings)`);
}
