import type { Command } from 'commander';
import { createApiClient } from '../client.js';
import { loadConfig, resolveContext, saveConfig, type Context } from '../config.js';
import { CliError, UsageError } from '../errors.js';
import { printList, printObject } from '../output.js';
import { run } from '../command.js';
import { identify } from './auth.js';

/** An API key as shown back: its first 5 and last 2 characters (as the platform obfuscates keys). */
export function obfuscated(key: string): string {
  return key.length > 12 ? `${key.slice(0, 5)}...${key.slice(-2)}` : '***';
}

function shown(context: Context, current: boolean) {
  return {
    name: context.name,
    current,
    url: context.url,
    // A keychain context's key stays there: listing contexts reads no keychain.
    apiKey: context.credentialStore === 'keychain' ? null : obfuscated(context.apiKey),
    credentialStore: context.credentialStore ?? 'file',
    organization: context.organization ?? null,
    project: context.project ?? null,
  };
}

export function registerContext(program: Command): void {
  const context = program
    .command('context')
    .description('the saved contexts (platform, credential, organization and project), like kubectl config')
    .addHelpText(
      'after',
      `
Examples:
  mariner context list
  mariner context use mariner.example.com
  mariner context set --project proj-1234     # act in another project (OIDC or user credentials)
  mariner context set --clear                 # back to the credential's own project`,
    );

  context
    .command('list')
    .description('every saved context; * marks the current one')
    .action(
      run(async (inv) => {
        const config = loadConfig();
        printList(
          inv.format,
          config.contexts.map((c) => shown(c, c.name === config.currentContext)),
          [
            { header: 'CURRENT', value: (c) => (c.current ? '*' : '') },
            { header: 'NAME', value: (c) => c.name },
            { header: 'URL', value: (c) => c.url },
            { header: 'ORGANIZATION', value: (c) => c.organization },
            { header: 'PROJECT', value: (c) => c.project },
            { header: 'CREDENTIALS', value: (c) => c.credentialStore },
          ],
        );
      }),
    );

  context
    .command('show')
    .description('the current context (or --context NAME), the key obfuscated (null where the OS keychain keeps it)')
    .action(
      run(async (inv) => {
        const config = loadConfig();
        const name: string | undefined = inv.options['context'] ?? config.currentContext;
        const found = config.contexts.find((c) => c.name === name);
        if (!found) throw new CliError(name ? `no context named "${name}"` : 'no current context: run mariner login');
        printObject(inv.format, shown(found, found.name === config.currentContext));
      }),
    );

  context
    .command('use')
    .argument('<name>', 'a context name (mariner context list)')
    .description('make another saved context the current one')
    .action(
      run(async (inv, name: string) => {
        const config = loadConfig();
        if (!config.contexts.some((c) => c.name === name)) throw new CliError(`no context named "${name}" (mariner context list shows them)`);
        config.currentContext = name;
        saveConfig(config);
        if (inv.format === 'table') process.stdout.write(`Switched to context "${name}"\n`);
        else printObject(inv.format, { currentContext: name });
      }),
    );

  context
    .command('set')
    .description('choose the organization and project requests act in (checked with the platform before it is saved)')
    .option('--organization <id>', 'organization id')
    .option('--project <id>', 'project id')
    .option('--clear', "forget both: act in the credential's own (or default) project")
    .action(
      run(async (inv) => {
        const { organization, project, clear } = inv.options as { organization?: string; project?: string; clear?: boolean };
        if (!clear && !organization && !project) throw new UsageError('give --organization, --project or --clear');
        if (clear && (organization || project)) throw new UsageError('--clear takes no --organization or --project');
        const config = loadConfig();
        const name: string | undefined = inv.options['context'] ?? config.currentContext;
        const found = config.contexts.find((c) => c.name === name);
        if (!found) throw new CliError(name ? `no context named "${name}"` : 'no current context: run mariner login');
        // With its secret (from the keychain where it is kept there) to check with the platform; saveConfig keeps a keychain one out of the file.
        const { organization: _o, project: _p, ...rest } = resolveContext(config, found.name);
        const next: Context = { ...rest, ...(organization ? { organization } : {}), ...(project ? { project } : {}) };
        const client = createApiClient(next);
        let who;
        try {
          who = await identify(client);
        } catch (error) {
          throw new CliError(`the platform refused this context: ${(error as Error).message}; nothing was changed`, (error as CliError).code);
        } finally {
          await client.close();
        }
        config.contexts = config.contexts.map((c) => (c.name === found.name ? next : c));
        saveConfig(config);
        if (inv.format === 'table') {
          process.stdout.write(
            `Context "${found.name}" acts in ${who.project ? `project ${who.project.title} (${who.project.id})` : 'its default project'}${who.organization ? ` of ${who.organization.title}` : ''}\n`,
          );
        } else
          printObject(inv.format, { ...shown(next, found.name === config.currentContext), resolved: { organization: who.organization, project: who.project } });
      }),
    );
}
