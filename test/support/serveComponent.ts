import { startComponent, type RunningComponent } from '../../bin/serve.js';
import { loadServeConfig, type ComponentName } from '../../bin/serveConfig.js';
import { silentLogger } from '../../lib/logging.js';

/** What the components of one test deployment share. */
export interface ServedDeployment {
  secret: string;
  dataDir: string;
  databaseUrl: string;
  adminKey: string;
  /** Started components, in order (stop them in reverse). */
  running: RunningComponent[];
}

/**
 * One `mariner serve <component>` in this process, as the chart runs it but on loopback: any free port,
 * silent, no shutdown delay, the deployment's shared secret, database, data dir and admin key, plus
 * `env` (subgraph addresses, the component's own settings). Resolves once it serves.
 */
export async function startServeComponent(deployment: ServedDeployment, component: ComponentName, env: Record<string, string>): Promise<RunningComponent> {
  const { config, serve } = loadServeConfig(component, {
    MARINER_HOST: '127.0.0.1',
    MARINER_PORT: '0',
    MARINER_OPS_PORT: '0',
    MARINER_LOG_LEVEL: 'silent',
    MARINER_SHUTDOWN_DELAY_MS: '0',
    MARINER_INTERNAL_TOKEN_SECRET: deployment.secret,
    MARINER_DATA_DIR: deployment.dataDir,
    DATABASE_URL: deployment.databaseUrl,
    MARINER_ADMIN_API_KEY: deployment.adminKey,
    ...env,
  });
  const running = await startComponent(config, serve, silentLogger());
  deployment.running.push(running);
  await running.started;
  return running;
}
