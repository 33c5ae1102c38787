import type { Command } from 'commander';
import { createApiClient, type ApiClient } from '../client.js';
import {
  configPath,
  contextNameFor,
  credentialStoreSetting,
  forgetCredential,
  keepCredential,
  loadConfig,
  normaliseUrl,
  requireKeychain,
  saveConfig,
  type Context,
} from '../config.js';
import { KEYCHAIN_SERVICE, keychainAccount } from '../keychain.js';
import { CliError, UsageError } from '../errors.js';
import { printObject } from '../output.js';
import { readStdin, run } from '../command.js';

const WHOAMI = `query WhoAmI {
  self { id isServiceAccount organizationRoleBindings { organization { id title } role } projectRoleBindings { project { id title organizationId } role } }
}`;
/** The project requests act in: every key listed is of the current project (owners see all of them, others their own). */
const CURRENT_PROJECT = `query CurrentProject { apiKeys(limit: 1) { items { project { id title organization { id title } } } } }`;

export interface Identity {
  user: string;
  serviceAccount: boolean;
  organization: { id: string; title: string } | null;
  project: { id: string; title: string } | null;
  organizations: { id: string; title: string; role: string }[];
  projects: { id: string; title: string; organizationId: string; role: string }[];
}

/** Who the client's credential is, and in which project it acts; a bad credential throws (the login check). */
export async function identify(client: ApiClient): Promise<Identity> {
  const { self } = await client.graphql<{
    self: {
      id: string;
      isServiceAccount: boolean;
      organizationRoleBindings: { organization: { id: string; title: string }; role: string }[];
      projectRoleBindings: { project: { id: string; title: string; organizationId: string }; role: string }[];
    };
  }>(WHOAMI);
  let current: { id: string; title: string; organization: { id: string; title: string } } | undefined;
  try {
    current = (await client.graphql<{ apiKeys: { items: { project: typeof current }[] } }>(CURRENT_PROJECT)).apiKeys.items[0]?.project;
  } catch (error) {
    // A refusal to act in the chosen project ("No project context: ...") is the context's fault: say so.
    // Anything else (a role that may not list keys): the project stays unknown.
    if (error instanceof CliError && (error.code === 'UNAUTHENTICATED' || error.message.startsWith('No project context'))) throw error;
  }
  const organizations = self.organizationRoleBindings.map((b) => ({ id: b.organization.id, title: b.organization.title, role: b.role }));
  const projects = self.projectRoleBindings.map((b) => ({ id: b.project.id, title: b.project.title, organizationId: b.project.organizationId, role: b.role }));
  const bound = projects.find((p) => p.id === client.context.project);
  const chosenProject = current ?? bound;
  const chosenOrganization = current?.organization ?? organizations.find((o) => o.id === (client.context.organization ?? bound?.organizationId)) ?? null;
  return {
    user: self.id,
    serviceAccount: self.isServiceAccount,
    organization: chosenOrganization ? { id: chosenOrganization.id, title: chosenOrganization.title } : null,
    project: chosenProject ? { id: chosenProject.id, title: chosenProject.title } : null,
    organizations,
    projects,
  };
}

async function promptUrl(): Promise<string> {
  const { input } = await import('@inquirer/prompts');
  return input({ message: 'Mariner URL:', validate: (v) => /^https?:\/\/\S+$/.test(v.trim()) || 'an http:// or https:// URL' });
}

async function promptKey(): Promise<string> {
  const { password } = await import('@inquirer/prompts');
  // No mask: nothing at all is echoed, not even its length.
  return password({ message: 'API key (input hidden):', validate: (v) => v.trim().length > 0 || 'paste the key (sk-...)' });
}

export function registerAuth(program: Command): void {
  program
    .command('login')
    .description(
      'log in to a Mariner platform with an API key, checked against the platform, then saved as a context (the credential in the OS keychain, else in the owner-only config file)',
    )
    .option('--url <url>', 'the platform URL (default: $MARINER_URL, else the current context, else asked)')
    .option('--api-key-stdin', 'read the API key from standard input (for scripts) instead of asking for it')
    .option('--name <name>', 'the context name (default: the URL host and port)')
    .option('--oidc', "sign in at the platform's identity provider in a browser (authorization code + PKCE, loopback redirect) instead of with a key")
    .option('--issuer <url>', "with --oidc: the identity provider (default: $MARINER_OIDC_ISSUER, else the context's last one)")
    .option('--client-id <id>', "with --oidc: Mariner's client id there, MARINER_OIDC_AUDIENCE (default: $MARINER_OIDC_CLIENT_ID, else the context's last one)")
    .option('--device', 'with --oidc: the device flow, for a machine without a browser (a URL and a code to enter elsewhere)')
    .option('--no-browser', 'with --oidc: only print the URL to open (the default also runs xdg-open where there is one)')
    .option(
      '--credential-store <store>',
      'where the credential is kept: keychain (the OS keychain, else an error), file (the owner-only config file), auto (the keychain when there is one, else the file; the default, or $MARINER_CREDENTIAL_STORE)',
    )
    .addHelpText(
      'after',
      `
Examples:
  mariner login --url https://mariner.example.com           # asks for the key, not echoed
  echo "$MARINER_API_KEY" | mariner login --url http://127.0.0.1:8080 --api-key-stdin
  mariner login --url https://mariner.example.com --oidc --issuer https://dex.example.com --client-id mariner`,
    )
    .action(
      run(async (inv) => {
        const config = loadConfig();
        const given = inv.options['url'] ?? process.env['MARINER_URL'] ?? config.contexts.find((c) => c.name === config.currentContext)?.url;
        const url = normaliseUrl(given ?? (process.stdin.isTTY ? await promptUrl() : missing('--url is required when standard input is not a terminal')));
        const name: string = inv.options['name'] ?? contextNameFor(url);
        const previous = config.contexts.find((c) => c.name === name);
        const store = credentialStoreSetting(inv.options['credentialStore']);
        // A keychain that was asked for and is not there: say so before asking for a key or a browser sign-in.
        if (store === 'keychain') requireKeychain({ name, url });
        let apiKey: string;
        let oidc: Pick<Context, 'tokenExpiresAt' | 'oidcIssuer' | 'oidcClientId'> = {};
        if (inv.options['oidc']) {
          if (inv.options['apiKeyStdin']) throw new UsageError('--oidc and --api-key-stdin are two ways to log in: give one');
          const issuer: string | undefined = inv.options['issuer'] ?? process.env['MARINER_OIDC_ISSUER'] ?? previous?.oidcIssuer;
          const clientId: string | undefined = inv.options['clientId'] ?? process.env['MARINER_OIDC_CLIENT_ID'] ?? previous?.oidcClientId;
          if (!issuer) throw new UsageError('--oidc needs the identity provider: --issuer URL (or $MARINER_OIDC_ISSUER)');
          if (!clientId) throw new UsageError("--oidc needs Mariner's client id at the identity provider: --client-id ID (or $MARINER_OIDC_CLIENT_ID)");
          const { deviceLogin, pkceLogin } = await import('../oidc.js');
          const tokens = inv.options['device']
            ? await deviceLogin({ issuer: normaliseUrl(issuer), clientId })
            : await pkceLogin({ issuer: normaliseUrl(issuer), clientId, browser: inv.options['browser'] !== false });
          apiKey = tokens.token;
          oidc = { tokenExpiresAt: tokens.expiresAt.toISOString(), oidcIssuer: normaliseUrl(issuer), oidcClientId: clientId };
        } else if (inv.options['apiKeyStdin']) apiKey = (await readStdin()).trim();
        else if (process.stdin.isTTY) apiKey = (await promptKey()).trim();
        else missing('standard input is not a terminal: pass --api-key-stdin and pipe the key in');
        if (!apiKey!) throw new UsageError('no API key given');
        const context: Context = { name, url, apiKey: apiKey!, ...oidc };
        const client = createApiClient(context);
        let who: Identity;
        try {
          who = await identify(client);
        } catch (error) {
          if (error instanceof CliError && error.code === 'UNAUTHENTICATED')
            throw new CliError(`login failed: ${error.message}; nothing was saved`, error.code);
          throw error;
        } finally {
          await client.close();
        }
        const saved = keepCredential(context, store);
        config.contexts = [...config.contexts.filter((c) => c.name !== name), saved];
        config.currentContext = name;
        saveConfig(config);
        // The context's earlier login kept in the keychain, and this one elsewhere (the file, or another platform's entry): not left behind.
        if (previous && (saved.credentialStore !== 'keychain' || keychainAccount(previous) !== keychainAccount(saved))) forgetCredential(previous);
        const where =
          saved.credentialStore === 'keychain'
            ? `the OS keychain (service "${KEYCHAIN_SERVICE}", account "${keychainAccount(saved)}")`
            : `${configPath()}${process.platform === 'win32' ? '' : ' (mode 0600)'}`;
        if (inv.format === 'table') {
          process.stdout.write(
            `Logged in to ${url} as ${who.user}${who.project ? ` (project ${who.project.title}, ${who.project.id})` : ''}; context "${name}" saved in ${configPath()}` +
              `${oidc.tokenExpiresAt ? ` (until ${oidc.tokenExpiresAt})` : ''}\nCredentials saved in ${where}\n`,
          );
        } else
          printObject(inv.format, {
            context: name,
            url,
            user: who.user,
            organization: who.organization,
            project: who.project,
            ...(oidc.tokenExpiresAt ? { expiresAt: oidc.tokenExpiresAt } : {}),
            credentialStore: saved.credentialStore ?? 'file',
          });
      }),
    );

  program
    .command('logout')
    .description(
      'forget the current context (or --name NAME) and its key (in the config file or the OS keychain); the key itself stays valid (mariner keys delete revokes it)',
    )
    .option('--name <name>', 'the context to forget')
    .option('--all', 'forget every context')
    .action(
      run(async (inv) => {
        const config = loadConfig();
        const name: string | undefined = inv.options['all'] ? undefined : (inv.options['name'] ?? config.currentContext);
        if (!inv.options['all'] && !config.contexts.some((c) => c.name === name)) throw new CliError(name ? `no context named "${name}"` : 'not logged in');
        const removed = inv.options['all'] ? config.contexts.map((c) => c.name) : [name!];
        const forgotten = config.contexts.filter((c) => removed.includes(c.name));
        config.contexts = config.contexts.filter((c) => !removed.includes(c.name));
        if (!config.contexts.some((c) => c.name === config.currentContext)) delete config.currentContext;
        saveConfig(config);
        for (const context of forgotten) forgetCredential(context);
        if (inv.format === 'table') process.stdout.write(`Logged out of ${removed.map((n) => `"${n}"`).join(', ') || 'nothing'}\n`);
        else printObject(inv.format, { loggedOut: removed });
      }),
    );

  program
    .command('whoami')
    .description('who the current context logs in as, and the organization and project requests act in')
    .action(
      run(async (inv) => {
        const client = inv.client();
        const who = await identify(client);
        if (inv.format === 'table') {
          printObject('table', {
            context: client.context.name,
            url: client.context.url,
            user: `${who.user}${who.serviceAccount ? ' (service account)' : ''}`,
            organization: who.organization ? `${who.organization.title} (${who.organization.id})` : '',
            project: who.project ? `${who.project.title} (${who.project.id})` : '',
            roles: [...who.organizations.map((o) => `${o.title}: ${o.role}`), ...who.projects.map((p) => `${p.title}: ${p.role}`)],
          });
        } else printObject(inv.format, { context: client.context.name, url: client.context.url, ...who });
      }),
    );
}

function missing(message: string): never {
  throw new UsageError(message);
}
