import { chmodSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { CliError, UsageError } from './errors.js';
import { deleteKeychainSecret, getKeychainSecret, KEYCHAIN_SERVICE, keychainAccount, KeychainUnavailable, setKeychainSecret } from './keychain.js';

/**
 * The command line's own state: the platforms it has logged in to, side by side, each a context (like
 * kubectl's), and which one is current. One YAML file in the user's config dir, owner-only (mode 0600):
 *
 *   $MARINER_CONFIG, else $XDG_CONFIG_HOME/mariner/config.yaml, else %APPDATA%\mariner\config.yaml on
 *   Windows, else ~/.config/mariner/config.yaml
 *
 * A context's secret (API key or OIDC ID token) is kept in the OS keychain where there is one (keychain.ts:
 * macOS Keychain, Windows Credential Manager, the Secret Service over D-Bus on Linux), the context marked
 * `credential-store: keychain`; else in this file (`api-key`), as kubectl, gh without a keyring and the cloud
 * CLIs keep it. Servers, containers, CI runners and SSH sessions mostly have no D-Bus session with an unlocked
 * keyring: there login falls back to the file and says so. `--credential-store` or MARINER_CREDENTIAL_STORE
 * (keychain|file) forces one; a forced keychain that is not there is an error, not a fallback. Each read
 * follows the context's own marker, whatever the setting is now.
 *
 * MARINER_URL with MARINER_API_KEY in the environment stand for a context without any file (scripts, CI).
 * A file others may read (group/world permissions) or of another owner is refused, as ssh refuses such a key.
 */
export interface Context {
  name: string;
  /** The platform's public URL, no trailing slash (GraphQL at /graphql, the OpenAI API at /v1). */
  url: string;
  /** The secret; of a keychain context, '' until resolveContext reads it from the keychain. */
  apiKey: string;
  /** Where the secret is kept: absent, in the file; 'keychain', in the OS keychain (saveConfig never writes it then). */
  credentialStore?: 'keychain';
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
        apiKey: typeof c['api-key'] === 'string' && c['credential-store'] !== 'keychain' ? c['api-key'] : '',
        ...(c['credential-store'] === 'keychain' ? { credentialStore: 'keychain' as const } : {}),
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
      ...(c.credentialStore === 'keychain' ? { 'credential-store': 'keychain' } : { 'api-key': c.apiKey }),
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
    return withSecret(unexpired(found));
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
  return withSecret(unexpired(current));
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

/** A keychain context with its secret read from the keychain; gone or out of reach, the error says what to do. */
function withSecret(context: Context): Context {
  if (context.credentialStore !== 'keychain') return context;
  const account = keychainAccount(context);
  let secret: string | null;
  try {
    secret = getKeychainSecret(account);
  } catch (error) {
    if (!(error instanceof KeychainUnavailable)) throw error;
    throw new CliError(
      `context "${context.name}" keeps its credential in the OS keychain, which cannot be reached here (${error.message}): ` +
        'unlock it (on Linux: a D-Bus session with an unlocked Secret Service keyring), or run `mariner login` again, with `--credential-store file` where there is no keychain',
      'KEYCHAIN_UNAVAILABLE',
    );
  }
  if (!secret) {
    throw new CliError(
      `the credential of context "${context.name}" is no longer in the OS keychain (service "${KEYCHAIN_SERVICE}", account "${account}"): run \`mariner login\` again (UNAUTHENTICATED)`,
      'UNAUTHENTICATED',
    );
  }
  return { ...context, apiKey: secret };
}

export type CredentialStore = 'keychain' | 'file';

/**
 * Where `mariner login` is told to keep the secret: `--credential-store`, else MARINER_CREDENTIAL_STORE;
 * undefined (or `auto`): the keychain when there is one, else the file.
 */
export function credentialStoreSetting(option: string | undefined, env: NodeJS.ProcessEnv = process.env): CredentialStore | undefined {
  const [value, from] = option !== undefined ? [option, '--credential-store'] : [env['MARINER_CREDENTIAL_STORE'], 'MARINER_CREDENTIAL_STORE'];
  if (!value || value === 'auto') return undefined;
  if (value === 'keychain' || value === 'file') return value;
  throw new UsageError(`${from} must be keychain, file or auto, not "${value}"`);
}

/** Throws unless the keychain answers (before a login asks for a key it could not keep there). */
export function requireKeychain(context: Pick<Context, 'name' | 'url'>): void {
  try {
    getKeychainSecret(keychainAccount(context));
  } catch (error) {
    if (error instanceof KeychainUnavailable) throw keychainRequired(error);
    throw error;
  }
}

function keychainRequired(error: KeychainUnavailable): CliError {
  return new CliError(
    `the OS keychain was asked for (--credential-store keychain or MARINER_CREDENTIAL_STORE=keychain) but cannot be used here: ${error.message}; nothing was saved ` +
      '(on Linux it needs a D-Bus session with an unlocked Secret Service keyring; `--credential-store file` keeps the credential in the owner-only config file)',
    'KEYCHAIN_UNAVAILABLE',
  );
}

/**
 * Keeps a logged-in context's secret: in the keychain unless the setting says file (a keychain that fails
 * falls back to the file, or with the setting `keychain` is an error). Returns the context to save.
 */
export function keepCredential(context: Context, setting: CredentialStore | undefined): Context {
  const { credentialStore: _previous, ...inFile } = context;
  if (setting === 'file') return inFile;
  try {
    setKeychainSecret(keychainAccount(context), context.apiKey);
    return { ...inFile, credentialStore: 'keychain' };
  } catch (error) {
    if (!(error instanceof KeychainUnavailable)) throw error;
    if (setting === 'keychain') throw keychainRequired(error);
    return inFile;
  }
}

/**
 * Deletes a context's keychain entry (a file context has none). A keychain out of reach leaves it there:
 * the warning says which entry, for the user to delete.
 */
export function forgetCredential(context: Context): void {
  if (context.credentialStore !== 'keychain') return;
  const account = keychainAccount(context);
  try {
    deleteKeychainSecret(account);
  } catch (error) {
    if (!(error instanceof KeychainUnavailable)) throw error;
    process.stderr.write(
      `mariner: warning: the OS keychain cannot be reached (${error.message}): the credential of context "${context.name}" stays there (service "${KEYCHAIN_SERVICE}", account "${account}")\n`,
    );
  }
}
