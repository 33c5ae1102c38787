import type { Command } from 'commander';
import type { ApiClient } from '../client.js';
import { printData, printList } from '../output.js';
import { run } from '../command.js';
import { listAll } from '../pages.js';
import { identify } from './auth.js';

interface OrganizationView {
  id: string;
  title: string;
  isDefault: boolean;
  createdAt: string;
}

interface ProjectView {
  id: string;
  title: string;
  organizationId: string;
  isDefault: boolean;
  createdAt: string;
}

/** `--organization`, else the organization the context acts in. */
async function organizationOf(client: ApiClient, given: string | undefined): Promise<string> {
  if (given) return given;
  const who = await identify(client);
  if (!who.organization) throw new Error('no current organization: pass --organization');
  return who.organization.id;
}

export function registerOrganizations(program: Command): void {
  const orgs = program.command('orgs').description('organizations you belong to: list, create (owners of the default organization)');
  orgs
    .command('list')
    .description('the organizations you belong to')
    .action(
      run(async (inv) => {
        const client = inv.client();
        const items = await listAll<OrganizationView>(client, 'organizations', 'id title isDefault createdAt');
        printList(inv.format, items, [
          { header: 'ID', value: (o) => o.id },
          { header: 'TITLE', value: (o) => o.title },
          { header: 'DEFAULT', value: (o) => (o.isDefault ? 'yes' : '') },
          { header: 'CREATED', value: (o) => o.createdAt },
        ]);
      }),
    );
  orgs
    .command('create')
    .argument('<title>', "the organization's title")
    .description('create an organization; you become its owner')
    .action(
      run(async (inv, title: string) => {
        const { createOrganization } = await inv
          .client()
          .graphql<{ createOrganization: OrganizationView }>(
            `mutation ($title: String!) { createOrganization(input: { title: $title }) { id title isDefault createdAt } }`,
            {
              title,
            },
          );
        if (inv.format === 'table') process.stdout.write(`Organization ${createOrganization.id} (${createOrganization.title}) created\n`);
        else printData(inv.format, createOrganization);
      }),
    );

  const projects = program.command('projects').description("an organization's projects: list, create");
  projects
    .command('list')
    .description('the projects you can see in an organization (default: the current one)')
    .option('--organization <id>', 'the organization')
    .action(
      run(async (inv) => {
        const client = inv.client();
        const organizationId = await organizationOf(client, inv.options['organization']);
        const items = await listAll<ProjectView>(client, 'projects', 'id title organizationId isDefault createdAt', {
          declare: '$org: ID!',
          args: 'organizationId: $org',
          variables: { org: organizationId },
        });
        printList(inv.format, items, [
          { header: 'ID', value: (p) => p.id },
          { header: 'TITLE', value: (p) => p.title },
          { header: 'ORGANIZATION', value: (p) => p.organizationId },
          { header: 'DEFAULT', value: (p) => (p.isDefault ? 'yes' : '') },
          { header: 'CREATED', value: (p) => p.createdAt },
        ]);
      }),
    );
  projects
    .command('create')
    .argument('<title>', "the project's title")
    .description('create a project in an organization (default: the current one)')
    .option('--organization <id>', 'the organization')
    .action(
      run(async (inv, title: string) => {
        const client = inv.client();
        const organizationId = await organizationOf(client, inv.options['organization']);
        const { createProject } = await client.graphql<{ createProject: ProjectView }>(
          `mutation ($org: ID!, $title: String!) { createProject(input: { organizationId: $org, title: $title }) { id title organizationId isDefault createdAt } }`,
          { org: organizationId, title },
        );
        if (inv.format === 'table') process.stdout.write(`Project ${createProject.id} (${createProject.title}) created in ${createProject.organizationId}\n`);
        else printData(inv.format, createProject);
      }),
    );
}
