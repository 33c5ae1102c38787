import type { TestPlatform } from './platform.js';

const CREATE_ORG = `mutation($title: String!) { createOrganization(input: { title: $title }) { id } }`;
const CREATE_PROJECT = `mutation($org: ID!, $title: String!, $assignments: [ProjectAssignmentInput!]) {
  createProject(input: { organizationId: $org, title: $title, assignments: $assignments }) { id }
}`;
const CREATE_KEY = `mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret } }`;

/**
 * A new organization with one project (with the given namespace assignments) and a service-account
 * API key in it. `role` is the key's organization role: OWNER (organizationOwner: clusters scope
 * included) or READER (projectOwner: no clusters scope).
 */
export async function projectWithKey(
  t: TestPlatform,
  title: string,
  options: { role?: 'OWNER' | 'READER'; assignments?: { clusterId?: string | null; namespace: string; kueueQueueName?: string | null }[] } = {},
): Promise<{ organizationId: string; projectId: string; key: string }> {
  const { createOrganization: org } = await t.gqlOk(CREATE_ORG, { title });
  const { createProject: project } = await t.gqlOk(CREATE_PROJECT, { org: org.id, title: `${title} project`, assignments: options.assignments ?? null });
  const { createApiKey } = await t.gqlOk(CREATE_KEY, {
    input: { name: `${title}-key`, projectId: project.id, isServiceAccount: true, role: options.role ?? 'READER' },
  });
  return { organizationId: org.id, projectId: project.id, key: createApiKey.secret };
}
