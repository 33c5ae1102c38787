import type { Command } from 'commander';
import type { ApiClient } from '../client.js';
import { CliError, UsageError } from '../errors.js';
import { printData, printList } from '../output.js';
import { run } from '../command.js';
import { allPages } from '../pages.js';
import { identify } from './auth.js';

interface MemberView {
  user: { id: string; internalId: string; isServiceAccount: boolean };
  role: string;
  createdAt: string;
}

/** `--organization ID` names an organization's members; else `--project ID`, else the context's project. */
async function scopeOf(client: ApiClient, options: Record<string, string | undefined>): Promise<{ kind: 'organization' | 'project'; id: string }> {
  if (options['organization'] && options['project']) throw new UsageError('give --organization or --project, not both');
  if (options['organization']) return { kind: 'organization', id: options['organization'] };
  if (options['project']) return { kind: 'project', id: options['project'] };
  const who = await identify(client);
  if (!who.project) throw new CliError('no current project: pass --project or --organization');
  return { kind: 'project', id: who.project.id };
}

const ROLES = { organization: ['OWNER', 'READER'], project: ['OWNER', 'MEMBER'] } as const;

export function registerMembers(program: Command): void {
  const members = program
    .command('members')
    .description("a project's members (the context's project, or --project) or an organization's (--organization): list, add, remove")
    .addHelpText(
      'after',
      `
Examples:
  mariner members list
  mariner members add alice@example.com --role MEMBER
  mariner members add bob@example.com --organization org-... --role READER
  mariner members remove alice@example.com`,
    );
  const scoped = (command: Command) =>
    command
      .option('--project <id>', "the project (default: the context's)")
      .option('--organization <id>', "an organization's members instead of a project's (owners only)");

  scoped(members.command('list').description('the members and their roles')).action(
    run(async (inv) => {
      const client = inv.client();
      const scope = await scopeOf(client, inv.options);
      const items = await allPages((after) =>
        client
          .graphql<Record<string, { members: { items: MemberView[]; hasMore: boolean } } | null>>(
            `query ($id: ID!, $after: String) { ${scope.kind}(id: $id) { members(after: $after, limit: 100) { items { user { id internalId isServiceAccount } role createdAt } hasMore } } }`,
            { id: scope.id, after },
          )
          .then((r) => {
            const found = r[scope.kind];
            if (!found) throw new CliError(`${scope.kind} ${scope.id} not found (NOT_FOUND)`, 'NOT_FOUND');
            // The cursor is the member's internal user id.
            return { items: found.members.items.map((m) => ({ ...m, id: m.user.internalId })), hasMore: found.members.hasMore };
          }),
      );
      printList(
        inv.format,
        items.map((m) => ({ user: m.user.id, serviceAccount: m.user.isServiceAccount, role: m.role, createdAt: m.createdAt })),
        [
          { header: 'USER', value: (m) => `${m.user}${m.serviceAccount ? ' (service account)' : ''}` },
          { header: 'ROLE', value: (m) => m.role },
          { header: 'SINCE', value: (m) => m.createdAt },
        ],
      );
    }),
  );

  scoped(
    members
      .command('add')
      .argument('<user>', "the person's email")
      .requiredOption('--role <role>', 'OWNER or MEMBER in a project; OWNER or READER in an organization')
      .description('add a member, or change a member’s role'),
  ).action(
    run(async (inv, user: string) => {
      const client = inv.client();
      const scope = await scopeOf(client, inv.options);
      const role = String(inv.options['role']).toUpperCase();
      if (!(ROLES[scope.kind] as readonly string[]).includes(role)) {
        throw new UsageError(
          `--role must be ${ROLES[scope.kind].join(' or ')} in ${scope.kind === 'project' ? 'a project' : 'an organization'}, not ${inv.options['role']}`,
        );
      }
      const mutation = scope.kind === 'project' ? 'addProjectMember(projectId: $id' : 'addOrganizationMember(organizationId: $id';
      const roleType = scope.kind === 'project' ? 'ProjectRole' : 'OrganizationRole';
      const result = await client.graphql<Record<string, MemberView>>(
        `mutation ($id: ID!, $user: ID!, $role: ${roleType}!) { member: ${mutation}, userId: $user, role: $role) { user { id internalId isServiceAccount } role createdAt } }`,
        { id: scope.id, user, role },
      );
      const member = result['member']!;
      if (inv.format === 'table') process.stdout.write(`${member.user.id} is now ${member.role} of ${scope.kind} ${scope.id}\n`);
      else printData(inv.format, { [`${scope.kind}Id`]: scope.id, user: member.user.id, role: member.role, createdAt: member.createdAt });
    }),
  );

  scoped(members.command('remove').argument('<user>', "the person's email").description('remove a member')).action(
    run(async (inv, user: string) => {
      const client = inv.client();
      const scope = await scopeOf(client, inv.options);
      const mutation = scope.kind === 'project' ? 'removeProjectMember(projectId: $id' : 'removeOrganizationMember(organizationId: $id';
      const result = await client.graphql<Record<string, { id: string; deleted: boolean }>>(
        `mutation ($id: ID!, $user: ID!) { removed: ${mutation}, userId: $user) { id deleted } }`,
        { id: scope.id, user },
      );
      if (inv.format === 'table') process.stdout.write(`${user} removed from ${scope.kind} ${scope.id}\n`);
      else printData(inv.format, { [`${scope.kind}Id`]: scope.id, user, ...result['removed'] });
    }),
  );
}
