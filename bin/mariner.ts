#!/usr/bin/env -S npx tsx
/**
 * mariner: one entry point.
 *   mariner up     every component in one process on embedded defaults (PGlite, local data dir)
 */
import { createServer as createNetServer } from 'node:net';
import { ConfigError, loadConfig } from '../lib/config.js';
import { createLogger } from '../lib/logging.js';
import { startPlatform } from './platform.js';

const USAGE = `usage: mariner <command>

commands:
  up        start the whole platform in one process (embedded defaults)

settings (environment):
  MARINER_PORT            public port (default 8080)
  MARINER_DATA_DIR        data directory (default ./.mariner)
  MARINER_ADMIN_API_KEY   fix the bootstrap admin key (sk-...)
  DATABASE_URL            use this PostgreSQL instead of the embedded PGlite
  MARINER_OIDC_ISSUER     accept OIDC tokens from this issuer (MARINER_OIDC_AUDIENCE to check aud)`;

/** Fails fast when the public port is taken, before the database opens (the real listen still checks). */
async function checkPortFree(port: number, host: string): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const probe = createNetServer();
    probe.once('error', reject);
    probe.listen({ port, host, exclusive: true }, () => probe.close(() => resolve()));
  });
}

async function up(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  const started = Date.now();
  await checkPortFree(config.port, config.host);
  const platform = await startPlatform(config, { logger });
  const lines = [
    '',
    `Mariner is up (${Date.now() - started} ms, ${platform.db.kind === 'pglite' ? `embedded PGlite in ${config.dataDir}` : 'PostgreSQL'})`,
    `  GraphQL:    ${platform.url}/graphql   (open it in a browser for the explorer)`,
    `  OpenAI API: ${platform.url}/v1`,
  ];
  if (platform.adminApiKey) {
    lines.push(
      '',
      '  Admin API key (shown once, store it now):',
      `    ${platform.adminApiKey}`,
    );
  } else {
    lines.push('', '  Admin API key: created on first start (or set by MARINER_ADMIN_API_KEY); not shown again.');
  }
  lines.push(
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
    const timer = setTimeout(() => {
      logger.error('shutdown took longer than 10 s; exiting');
      process.exit(1);
    }, 10_000);
    timer.unref();
    await platform.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

async function main(argv: string[]): Promise<void> {
  const [command] = argv;
  switch (command) {
    case 'up':
      return up();
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return;
    default:
      process.stderr.write(`mariner: unknown command "${command}"\n\n${USAGE}\n`);
      process.exit(2);
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
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
