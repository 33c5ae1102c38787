import type { Command } from 'commander';
import { printData, printList } from '../output.js';
import { run } from '../command.js';
import { listAll } from '../pages.js';

const KEY_FIELDS = 'id name secret createdAt isServiceAccount organizationRole projectRole user { id } project { id title } organization { id title }';

interface ApiKeyView {
  id: string;
  name: string;
  /** Obfuscated (first 5 and last 2 characters), except in `keys create`'s answer. */
  secret: string;
  createdAt: string;
  isServiceAccount: boolean;
  organizationRole: string | null;
  projectRole: string | null;
  user: { id: string };
  project: { id: string; title: string };
  organization: { id: string; title: string };
}

export function registerKeys(program: Command): void {
  const keys = program
    .command('keys')
    .description('API keys of the current project: list, create (the secret is shown once), delete')
    .addHelpText(
      'after',
      `
Examples:
  mariner keys create ci-bot                 # prints the secret once: store it now
  mariner keys create ci-bot -o json | jq -r .secret > ci-bot.key
  mariner keys delete key_1234`,
    );

  keys
    .command('list')
    .description("the project's keys (owners see every key, others their own), secrets obfuscated")
    .action(
      run(async (inv) => {
        const client = inv.client();
        const items = await listAll<ApiKeyView>(client, 'apiKeys', KEY_FIELDS);
        printList(inv.format, items, [
          { header: 'ID', value: (k) => k.id },
          { header: 'NAME', value: (k) => k.name },
          { header: 'SECRET', value: (k) => k.secret },
          { header: 'USER', value: (k) => k.user.id },
          { header: 'PROJECT', value: (k) => k.project.title },
          { header: 'CREATED', value: (k) => k.createdAt },
        ]);
      }),
    );

  keys
    .command('create')
    .argument('<name>', "the key's name")
    .description('create a key in the current project (or --project); its secret is printed this once')
    .option('--project <id>', 'the project (default: the current one)')
    .option('--service-account <role>', 'a service-account key with this organization role (OWNER, READER; organization owners only)')
    .action(
      run(async (inv, name: string) => {
        const input: Record<string, unknown> = { name };
        if (inv.options['project']) input['projectId'] = inv.options['project'];
        if (inv.options['serviceAccount']) Object.assign(input, { isServiceAccount: true, role: String(inv.options['serviceAccount']).toUpperCase() });
        const { createApiKey } = await inv
          .client()
          .graphql<{ createApiKey: { secret: string; apiKey: ApiKeyView } }>(
            `mutation ($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { ${KEY_FIELDS} } } }`,
            { input },
          );
        const key = { ...createApiKey.apiKey, secret: createApiKey.secret };
        if (inv.format !== 'table') return printData(inv.format, key);
        process.stdout.write(`Created API key ${key.id} (${key.name}) in project ${key.project.title}.\nSecret (shown once, store it now):\n  ${key.secret}\n`);
      }),
    );

  keys
    .command('delete')
    .argument('<id>', 'the key id (mariner keys list)')
    .description('delete a key: it stops working at once')
    .action(
      run(async (inv, id: string) => {
        const { deleteApiKey } = await inv
          .client()
          .graphql<{ deleteApiKey: { id: string; deleted: boolean } }>(`mutation ($id: ID!) { deleteApiKey(id: $id) { id deleted } }`, { id });
        if (inv.format === 'table') process.stdout.write(`API key ${deleteApiKey.id} deleted\n`);
        else printData(inv.format, deleteApiKey);
      }),
    );
}
