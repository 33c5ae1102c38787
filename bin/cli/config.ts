import { chmodSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { CliError } from './errors.js';

/**
 * The command line's own state: the platforms it has logged in to, side by side, each a context (like
 * kubectl's), and which one is current. One YAML file in the user's config dir, owner-only (mode 0600):
 * it holds API keys.
 *
 *   $MARINER_CONFIG, else $XDG_CONFIG_HOME/mariner/config.yaml, else %APPDATA%\mariner\config.yaml on
 *   Windows, else ~/.config/mariner/config.yaml
 *
 * MARINER_URL with MARINER_API_KEY in the environment stand for a context without any file (scripts, CI).
 * A file others may read (group/world permissions) or of another owner is refused, as ssh refuses such a key.
 *
 * Not the OS keychain: on Linux that is libsecret's Secret Service over a D-Bus session bus with an unlocked
 * keyring, which servers, containers, CI runners and SSH sessions (where this command line mostly runs)
 * do not have; a store that works on some machines and silently not on others would put keys in two places.
 * The owner-only file, checked on every read, is what kubectl, gh (without a keyring), ssh and the cloud CLIs keep.
 */
export interface Context {
  name: string;
  /** The platform's public URL, no trailing slash (GraphQL at /graphql, the OpenAI API at /v1). */
  url: string;
  apiKey: string;
  /** An OIDC login's ID token (in apiKey) expires: then the context says to log in again. */
  tokenExpiresAt?: string;
  /** The OIDC issuer and client id of that login (`mariner login --oidc` reuses them). */
  oidcIssuer?: string;
  oidcClientId?: string;
  /** Sent as OpenAI-Organization / OpenAI-Project: which organization and project requests act in. */
  organization?: string;
  project?: string;
}

export interface CliConfig {
  currentContext?: string;
  contexts: Context[];
}

export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env['MARINER_CONFIG']) return env['MARINER_CONFIG'];
  const base = env['XDG_CONFIG_HOME'] || (process.platform === 'win32' && env['APPDATA']) || path.join(env['HOME'] || homedir(), '.config');
  return path.join(base, 'mariner', 'config.yaml');
}

/**
 * Refuses a credentials file that others may read or change, as ssh refuses such a private key: group or
 * world permissions, or another owner (POSIX only; on Windows %APPDATA% is the user's own).
 */
export function checkPrivate(file: string): void {
  if (process.platform === 'win32') return;
  let stat;
  try {
    stat = statSync(file);
  } catch {
    return;
  }
  const mode = stat.mode & 0o777;
  if (mode & 0o077) {
    throw new CliError(
      `permissions ${mode.toString(8).padStart(4, '0')} for ${file} are too open: it holds your credentials, and must not be readable by others. ` +
        `Run \`chmod 600 ${file}\` (and revoke the keys in it if others may have read them)`,
      'INSECURE_CONFIG',
    );
  }
  const uid = process.getuid?.();
  if (uid !== undefined && stat.uid !== uid) {
    throw new CliError(`${file} belongs to another user (uid ${stat.uid}): it holds credentials, so only a file of your own is used`, 'INSECURE_CONFIG');
  }
}

export function loadConfig(file = configPath()): CliConfig {
  let text: string;
  try {
    checkPrivate(file);
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if (error instanceof CliError) throw error;
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { contexts: [] };
    throw new CliError(`cannot read ${file}: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = YAML.parse(text);
  } catch (error) {
    throw new CliError(`${file} is not valid YAML: ${(error as Error).message}`);
  }
  const raw = (parsed ?? {}) as { 'current-context'?: unknown; contexts?: unknown };
  const contexts = Array.isArray(raw.contexts) ? raw.contexts : [];
  return {
    ...(typeof raw['current-context'] === 'string' ? { currentContext: raw['current-context'] } : {}),
    contexts: contexts
      .filter((c): c is Record<string, unknown> => !!c && typeof c === 'object' && typeof c.name === 'string' && typeof c.url === 'string')
      .map((c) => ({
        name: c['name'] as string,
        url: c['url'] as string,
        apiKey: typeof c['api-key'] === 'string' ? c['api-key'] : '',
        ...(typeof c['organization'] === 'string' ? { organization: c['organization'] } : {}),
        ...(typeof c['project'] === 'string' ? { project: c['project'] } : {}),
        ...(typeof c['token-expires-at'] === 'string' ? { tokenExpiresAt: c['token-expires-at'] } : {}),
        ...(typeof c['oidc-issuer'] === 'string' ? { oidcIssuer: c['oidc-issuer'] } : {}),
        ...(typeof c['oidc-client-id'] === 'string' ? { oidcClientId: c['oidc-client-id'] } : {}),
      })),
  };
}

/** Written to a temporary file created owner-only, then renamed over the old one: never readable by others, never half-written. */
export function saveConfig(config: CliConfig, file = configPath()): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const document = {
    ...(config.currentContext ? { 'current-context': config.currentContext } : {}),
    contexts: config.contexts.map((c) => ({
      name: c.name,
      url: c.url,
      'api-key': c.apiKey,
      ...(c.organization ? { organization: c.organization } : {}),
      ...(c.project ? { project: c.project } : {}),
      ...(c.tokenExpiresAt ? { 'token-expires-at': c.tokenExpiresAt } : {}),
      ...(c.oidcIssuer ? { 'oidc-issuer': c.oidcIssuer } : {}),
      ...(c.oidcClientId ? { 'oidc-client-id': c.oidcClientId } : {}),
    })),
  };
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, `# mariner command line: contexts and their credentials (keep this file private)\n${YAML.stringify(document)}`, { mode: 0o600 });
  chmodSync(temporary, 0o600);
  renameSync(temporary, file);
}

/** A context's default name: the platform's host and port. */
export function contextNameFor(url: string): string {
  return new URL(url).host;
}

export function normaliseUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new CliError(`not a URL: ${value}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliError(`the URL must be http:// or https://, not ${url.protocol}`);
  return `${url.origin}${url.pathname}`.replace(/\/+$/, '');
}

/**
 * The context a command uses: `--context NAME`, else MARINER_URL + MARINER_API_KEY from the
 * environment, else the current one.
 */
export function resolveContext(config: CliConfig, name: string | undefined, env: NodeJS.ProcessEnv = process.env): Context {
  if (name) {
    const found = config.contexts.find((c) => c.name === name);
    if (!found) throw new CliError(`no context named "${name}" (mariner context list shows them)`);
    return unexpired(found);
  }
  if (env['MARINER_URL'] && env['MARINER_API_KEY']) {
    return {
      name: '(environment)',
      url: normaliseUrl(env['MARINER_URL']),
      apiKey: env['MARINER_API_KEY'],
      ...(env['MARINER_ORGANIZATION'] ? { organization: env['MARINER_ORGANIZATION'] } : {}),
      ...(env['MARINER_PROJECT'] ? { project: env['MARINER_PROJECT'] } : {}),
    };
  }
  const current = config.contexts.find((c) => c.name === config.currentContext);
  if (!current) throw new CliError('not logged in: run `mariner login --url URL` first (or set MARINER_URL and MARINER_API_KEY)');
  return unexpired(current);
}

/** An OIDC login past its token's expiry: say so rather than send a token the platform will refuse. */
function unexpired(context: Context): Context {
  if (context.tokenExpiresAt && Date.parse(context.tokenExpiresAt) <= Date.now()) {
    throw new CliError(
      `the login of context "${context.name}" expired at ${context.tokenExpiresAt}: run \`mariner login --oidc\` again (UNAUTHENTICATED)`,
      'UNAUTHENTICATED',
    );
  }
  return context;
}
