#!/usr/bin/env -S npx tsx
/**
 * mariner: one entry point.
 *   mariner up     every component in one process on embedded defaults (PGlite, local data dir)
 *   mariner agent  a cluster agent: dials the control plane and runs work on its cluster
 *   mariner serve  one component per process (the Helm chart's way): serve.ts
 * Run compiled (`npm start`, the image: node dist/bin/mariner.js) or from sources (`npm run dev`: tsx).
 */
// First, before any other module is evaluated: refuse a Node.js that is too old, warn on one past its end of life.
import './checkNodeVersion.js';
import { readFileSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { parseArgs } from 'node:util';
import path from 'node:path';

// The platform's modules are imported when a command needs them: the everyday commands (bin/cli/) start
// without loading the gateway, the agent or the database drivers.
const platformModules = async () => {
  const [agentIndex, objectStore, errors, config, logging, demoModel, platform, agentOps, serve, serveConfig] = await Promise.all([
    import('../agent/index.js'),
    import('../lib/objectStore/index.js'),
    import('../lib/errors.js'),
    import('../lib/config.js'),
    import('../lib/logging.js'),
    import('./demoModel.js'),
    import('./platform.js'),
    import('./agentOps.js'),
    import('./serve.js'),
    import('./serveConfig.js'),
  ]);
  return {
    startAgent: agentIndex.startAgent,
    createObjectStore: objectStore.createObjectStore,
    MarinerError: errors.MarinerError,
    ConfigError: config.ConfigError,
    loadConfig: config.loadConfig,
    createLogger: logging.createLogger,
    DEMO_BASE_MODEL_ID: demoModel.DEMO_BASE_MODEL_ID,
    DEMO_MODEL_ID: demoModel.DEMO_MODEL_ID,
    DEMO_TRANSCRIPTION_MODEL_ID: demoModel.DEMO_TRANSCRIPTION_MODEL_ID,
    startPlatform: platform.startPlatform,
    startAgentOps: agentOps.startAgentOps,
    SERVE_USAGE: serve.SERVE_USAGE,
    serveCommand: serve.serveCommand,
    drainTimeoutSetting: serveConfig.drainTimeoutSetting,
  };
};

const usage = (SERVE_USAGE: string) => `usage: mariner <command>

everyday commands (mariner <command> --help for each; docs/cli.md):
  login, logout, whoami, context, models, chat, keys, orgs, projects, files, fine-tuning, clusters,
  kubeconfig, usage, completion

platform commands:
  up        start the whole platform in one process (embedded defaults)
              --demo-model   add a tiny demo model to try chat completions with (no download), and a demo
                             trainer for fine-tuning jobs on this machine (it trains nothing)
  agent     run a cluster agent: mariner agent --control-plane URL [options]
              --control-plane URL         the control plane's public URL (MARINER_CONTROL_PLANE_URL)
              --registration-key-file F   file holding the cluster's registration key; or set
                                          MARINER_REGISTRATION_KEY (avoid putting keys on a command line)
              --executor kubernetes|local where work runs (default: kubernetes in a pod, else local)
              --kubeconfig PATH           Kubernetes credentials (default: in-cluster, then ~/.kube/config)
              --transport auto|upgrade|websocket  tunnel transport (default auto: the Upgrade, or the WebSocket
                                          when a proxy cannot pass it)
              --tunnels N                 tunnels to keep open (default 1)
            the agent also reads the object store settings (MARINER_OBJECT_STORE, MARINER_S3_*),
            MARINER_DATA_DIR (runtime cache) and HF_ENDPOINT / HF_TOKEN (model downloads);
            MARINER_AGENT_OPS_PORT serves /healthz, /readyz (a tunnel is up) and /metrics
${SERVE_USAGE}

settings (environment):
  MARINER_PORT            public port (default 8080)
  MARINER_DATA_DIR        data directory (default ./.mariner)
  MARINER_ADMIN_API_KEY   fix the bootstrap admin key (sk-...)
  DATABASE_URL            use this PostgreSQL instead of the embedded PGlite
  MARINER_OIDC_ISSUER     accept OIDC tokens from this issuer, with MARINER_OIDC_AUDIENCE (required: their aud)
  MARINER_DRAIN_TIMEOUT_MS  on SIGINT/SIGTERM, time requests in flight get to finish (default 20000)`;

/** Fails fast when the public port is taken, before the database opens (the real listen still checks). */
async function checkPortFree(port: number, host: string): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const probe = createNetServer();
    probe.once('error', reject);
    probe.listen({ port, host, exclusive: true }, () => probe.close(() => resolve()));
  });
}

async function up(args: string[]): Promise<void> {
  const { loadConfig, drainTimeoutSetting, createLogger, startPlatform, DEMO_MODEL_ID, DEMO_BASE_MODEL_ID, DEMO_TRANSCRIPTION_MODEL_ID } =
    await platformModules();
  const { values } = parseArgs({ args, options: { 'demo-model': { type: 'boolean', default: false } }, strict: true });
  const config = loadConfig();
  const drainTimeoutMs = drainTimeoutSetting();
  const logger = createLogger(config.logLevel);
  const started = Date.now();
  await checkPortFree(config.port, config.host);
  const platform = await startPlatform(config, { logger, demoModel: values['demo-model'], drainTimeoutMs });
  const lines = [
    '',
    `Mariner is up (${Date.now() - started} ms, ${platform.db.kind === 'pglite' ? `embedded PGlite in ${config.dataDir}` : 'PostgreSQL'})`,
    `  GraphQL:    ${platform.url}/graphql   (open it in a browser for the explorer)`,
    `  OpenAI API: ${platform.url}/v1`,
    `  Console:    ${platform.url}/console   (sign in with an API key)`,
  ];
  if (platform.adminApiKey) {
    lines.push('', '  Admin API key (shown once, store it now):', `    ${platform.adminApiKey}`);
  } else {
    lines.push('', '  Admin API key: created on first start (or set by MARINER_ADMIN_API_KEY); not shown again.');
  }
  lines.push(
    '',
    `  Default cluster: ${platform.agent ? `${platform.agent.clusterId} (local agent ${platform.agent.connected() ? 'connected' : 'connecting'})` : 'off (MARINER_DEFAULT_CLUSTER=false)'}`,
    ...(values['demo-model']
      ? [
          '',
          `  Demo model: ${DEMO_MODEL_ID} (tiny, random weights; the first request starts its runtime)`,
          `  Demo base model for fine-tuning: ${DEMO_BASE_MODEL_ID} (with the demo trainer, which trains nothing)`,
          `  Demo transcription model: ${DEMO_TRANSCRIPTION_MODEL_ID} (tiny Whisper, random weights: POST /v1/audio/transcriptions)`,
        ]
      : []),
    '',
    '  Try:',
    `    curl -s ${platform.url}/graphql -H 'content-type: application/json' \\`,
    `      -H "Authorization: Bearer $MARINER_API_KEY" -d '{"query":"{ self { id } }"}'`,
    '',
  );
  process.stdout.write(`${lines.join('\n')}\n`);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    // Requests in flight get MARINER_DRAIN_TIMEOUT_MS, closing the rest 10 s more.
    const limitMs = drainTimeoutMs + 10_000;
    const timer = setTimeout(() => {
      logger.error({ limitMs }, 'shutdown took too long; exiting');
      process.exit(1);
    }, limitMs);
    timer.unref();
    await platform.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

class UsageError extends Error {}

async function agent(args: string[]): Promise<void> {
  const { createLogger, loadConfig, createObjectStore, startAgent, startAgentOps } = await platformModules();
  const { values } = parseArgs({
    args,
    options: {
      'control-plane': { type: 'string' },
      'registration-key': { type: 'string' },
      'registration-key-file': { type: 'string' },
      executor: { type: 'string' },
      kubeconfig: { type: 'string' },
      transport: { type: 'string' },
      tunnels: { type: 'string' },
    },
    strict: true,
  });
  const env = process.env;
  const controlPlaneUrl = values['control-plane'] ?? env['MARINER_CONTROL_PLANE_URL'];
  if (!controlPlaneUrl || !/^https?:\/\//.test(controlPlaneUrl)) throw new UsageError('--control-plane must be the control plane URL (http:// or https://)');
  const keyFile = values['registration-key-file'] ?? env['MARINER_REGISTRATION_KEY_FILE'];
  const registrationKey = (values['registration-key'] ?? (keyFile ? readFileSync(keyFile, 'utf8') : env['MARINER_REGISTRATION_KEY']) ?? '').trim();
  if (!registrationKey.startsWith('clusterkey-'))
    throw new UsageError('a registration key (clusterkey-...) is required: --registration-key-file or MARINER_REGISTRATION_KEY');
  const executor = values.executor ?? env['MARINER_AGENT_EXECUTOR'] ?? (env['KUBERNETES_SERVICE_HOST'] ? 'kubernetes' : 'local');
  if (executor !== 'kubernetes' && executor !== 'local') throw new UsageError('--executor must be kubernetes or local');
  const transport = values.transport ?? env['MARINER_AGENT_TRANSPORT'] ?? 'auto';
  if (transport !== 'auto' && transport !== 'upgrade' && transport !== 'websocket') throw new UsageError('--transport must be auto, upgrade or websocket');
  const tunnels = Number(values.tunnels ?? env['MARINER_AGENT_TUNNELS'] ?? 1);
  if (!Number.isInteger(tunnels) || tunnels < 1 || tunnels > 16) throw new UsageError('--tunnels must be between 1 and 16');
  const logger = createLogger(env['MARINER_LOG_LEVEL'] ?? 'info');
  // The platform's object store (MARINER_OBJECT_STORE / MARINER_S3_*): the loader writes models
  // there and the local executor's runtimes read them.
  const config = loadConfig();
  const objectStore = await createObjectStore(config.objectStore, { logger });
  const running = await startAgent({
    objectStore,
    cacheDir: path.join(config.dataDir, 'runtime-cache'),
    loader: { objectStore, huggingFace: { endpoint: config.huggingFace.endpoint, ...(config.huggingFace.token ? { token: config.huggingFace.token } : {}) } },
    // Local executor: MARINER_LOCAL_TRAINER_COMMAND, MARINER_LOCAL_BATCH_JOBS; Kubernetes: MARINER_FINE_TUNING_* (agent/kubernetesExecutor.ts).
    jobs: { trainerCommand: config.jobs.localTrainerCommand, runBatchJobs: config.jobs.localBatchJobs, workDir: path.join(config.dataDir, 'jobs') },
    controlPlaneUrl,
    registrationKey,
    executor,
    kubeconfig: values.kubeconfig ?? env['KUBECONFIG'],
    transport,
    tunnels,
    // MARINER_AUTOSCALER_*: the builtin autoscaler of this cluster's inference runtimes.
    autoscaler: config.autoscaler,
    logger,
  });
  const ops = await startAgentOps(running, env, logger);
  process.stdout.write(
    `mariner agent ${running.agentId}: cluster ${running.clusterName} (${running.clusterId}), ${running.executor.kind} executor, dialing ${controlPlaneUrl}\n`,
  );
  void running.whenConnected().then(() => process.stdout.write('mariner agent: tunnel connected\n'));
  void running.refused.then(async (reason) => {
    process.stderr.write(`mariner agent: ${reason}\n`);
    await ops?.close();
    await running.close();
    await objectStore.close();
    process.exit(1);
  });
  const stop = async () => {
    await ops?.close();
    await running.close();
    await objectStore.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'up':
      return up(rest);
    case 'agent':
      return agent(rest);
    case 'serve':
      return (await platformModules()).serveCommand(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${usage((await platformModules()).SERVE_USAGE)}\n`);
      return;
    default: {
      // The everyday commands (login, models, chat, ...): bin/cli/, on the public API only; their global
      // options (`--context NAME`, `-o FORMAT`) may come before the command.
      const cli = await import('./cli/index.js');
      if (cli.CLI_COMMANDS.includes(cli.commandOf(argv) ?? '')) {
        const code = await cli.runCli(argv);
        process.exitCode = code;
        // Whatever a command left open (a keep-alive socket) does not hold the exit; output already written drains first.
        setTimeout(() => process.exit(code), 500).unref();
        return;
      }
      process.stderr.write(`mariner: unknown command "${command}"\n\n${usage((await platformModules()).SERVE_USAGE)}\n`);
      process.exit(2);
    }
  }
}

main(process.argv.slice(2)).catch(async (error: unknown) => {
  const { MarinerError, ConfigError, SERVE_USAGE } = await platformModules();
  if (error instanceof UsageError || (error as { code?: string })?.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    process.stderr.write(`mariner: ${(error as Error).message}\n\n${usage(SERVE_USAGE)}\n`);
    process.exit(2);
  }
  if (error instanceof MarinerError) {
    process.stderr.write(`mariner: ${error.message}\n`);
    process.exit(1);
  }
  if (error instanceof ConfigError) {
    process.stderr.write(`mariner: ${error.message}\n`);
    process.exit(2);
  }
  const { code, port, address } = (error ?? {}) as NodeJS.ErrnoException & { port?: number; address?: string };
  if (code === 'EADDRINUSE') {
    process.stderr.write(`mariner: port ${port} is in use on ${address}; set MARINER_PORT to a free port (0 picks one)\n`);
    process.exit(1);
  }
  process.stderr.write(`mariner: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
