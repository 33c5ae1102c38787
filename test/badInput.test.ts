import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../lib/config.js';
import { startTestPlatform, type GraphQLResult, type TestPlatform } from './support/platform.js';

/**
 * Bad input gets a clear error and changes nothing: every refusal carries a code of the closed set
 * (and the HTTP status that goes with it), says what was wrong, and leaves the database as it was.
 */

let t: TestPlatform;
beforeAll(async () => {
  t = await startTestPlatform();
});
afterAll(async () => {
  await t?.close();
});

const CREATE_ORG = `mutation($title: String!) { createOrganization(input: { title: $title }) { id title } }`;
const CREATE_PROJECT = `mutation($input: CreateProjectInput!) { createProject(input: $input) { id title } }`;

type ErrorBody = { errors?: { message: string; extensions?: { code?: string; [key: string]: unknown } }[] };

/** A raw HTTP call to the gateway, for what the JSON helper cannot send. */
async function send(
  init: { method?: string; body?: string; headers?: Record<string, string>; search?: string },
  platform: TestPlatform = t,
): Promise<{ status: number; body: ErrorBody & { data?: unknown } }> {
  const response = await fetch(`${platform.graphqlUrl}${init.search ?? ''}`, {
    method: init.method ?? 'POST',
    headers: { authorization: `Bearer ${platform.adminKey}`, ...init.headers },
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
  const text = await response.text();
  let body: ErrorBody;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`non-JSON response ${response.status}: ${text.slice(0, 200)}`);
  }
  return { status: response.status, body };
}

/** The only error of a refused request, which must carry `code`. */
function onlyError(result: ErrorBody, code: string) {
  expect(result.errors, JSON.stringify(result.errors)).toHaveLength(1);
  const error = result.errors![0]!;
  expect(error.extensions?.code, error.message).toBe(code);
  return error;
}

/** Rows of the users subgraph's tables: what "nothing written" is checked against. */
async function rowCounts(platform: TestPlatform = t) {
  const count = async (table: string) => {
    const [row] = await platform.platform.db.knex.withSchema('users').table(table).count<{ count: string }[]>('* as count');
    return Number(row!.count);
  };
  return {
    organizations: await count('organizations'),
    projects: await count('projects'),
    users: await count('users'),
    organizationMembers: await count('organization_members'),
    projectMembers: await count('project_members'),
    apiKeys: await count('api_keys'),
  };
}

async function organizationTitles(): Promise<string[]> {
  const { organizations } = await t.gqlOk(`{ organizations(limit: 100) { items { title } } }`);
  return organizations.items.map((o: { title: string }) => o.title);
}

/** `field` nested `levels` times, alternating organization → projects → items → organization. */
function nestedOrganization(levels: number): string {
  let selection = 'id';
  for (let i = 0; i < levels; i++) selection = `projects { items { organization { ${selection} } } }`;
  return selection;
}

describe('malformed requests are refused before anything runs', () => {
  it('a GraphQL syntax error is HTTP 400 BAD_USER_INPUT, and the mutation before it does not run', async () => {
    const before = await rowCounts();
    const result = await t.gql(`mutation { createOrganization(input: { title: "Syntax" }) { id `);
    expect(result.status).toBe(400);
    const error = onlyError(result, 'BAD_USER_INPUT');
    expect(error.message).toMatch(/^Syntax Error/);
    expect(await rowCounts()).toEqual(before);
    expect(await organizationTitles()).not.toContain('Syntax');
  });

  it('a body that is not JSON is HTTP 400 BAD_USER_INPUT', async () => {
    const before = await rowCounts();
    const result = await send({
      body: '{"query": "mutation { createOrganization(input: { title: \\"Json\\" }) { id } }"',
      headers: { 'content-type': 'application/json' },
    });
    expect(result.status).toBe(400);
    expect(onlyError(result.body, 'BAD_USER_INPUT').message).toBe('Request body is not valid JSON');
    expect(await rowCounts()).toEqual(before);
  });

  it('a JSON body without a query is HTTP 400 BAD_USER_INPUT', async () => {
    const result = await send({ body: '{}', headers: { 'content-type': 'application/json' } });
    expect(result.status).toBe(400);
    onlyError(result.body, 'BAD_USER_INPUT');
  });

  it('a body over limits.maxBodyBytes is HTTP 413 BAD_USER_INPUT, and its mutation does not run', async () => {
    const before = await rowCounts();
    const limit = loadConfig({}).limits.maxBodyBytes;
    const body = JSON.stringify({ query: CREATE_ORG, variables: { title: 'Oversized', padding: 'x'.repeat(limit) } });
    const result = await send({ body, headers: { 'content-type': 'application/json' } });
    expect(result.status).toBe(413);
    expect(onlyError(result.body, 'BAD_USER_INPUT').message).toContain(`larger than ${limit} bytes`);
    expect(await rowCounts()).toEqual(before);
    expect(await organizationTitles()).not.toContain('Oversized');
  });

  it('an unknown field is HTTP 400 BAD_USER_INPUT naming the field, and nothing runs', async () => {
    const before = await rowCounts();
    const result = await t.gql(`mutation { createOrganization(input: { title: "Unknown" }) { id colour } }`);
    expect(result.status).toBe(400);
    expect(result.data).toBeUndefined();
    expect(onlyError(result, 'BAD_USER_INPUT').message).toContain('Cannot query field "colour" on type "Organization"');
    expect(await rowCounts()).toEqual(before);
  });

  it('a mutation over GET is refused with HTTP 405 BAD_USER_INPUT and does not run', async () => {
    const before = await rowCounts();
    const query = `mutation { createOrganization(input: { title: "Over GET" }) { id } }`;
    // The preflight header gets past CSRF prevention, so this is the GET rule speaking.
    const result = await send({ method: 'GET', search: `?query=${encodeURIComponent(query)}`, headers: { 'apollo-require-preflight': 'true' } });
    expect(result.status).toBe(405);
    expect(onlyError(result.body, 'BAD_USER_INPUT').message).toMatch(/GET requests.*mutation/i);
    expect(await rowCounts()).toEqual(before);
    expect(await organizationTitles()).not.toContain('Over GET');
  });

  it('a query over GET still works (with the preflight header)', async () => {
    const result = await send({ method: 'GET', search: `?query=${encodeURIComponent('{ self { id } }')}`, headers: { 'apollo-require-preflight': 'true' } });
    expect(result.status).toBe(200);
    expect(result.body.data).toEqual({ self: { id: 'admin@example.com' } });
  });

  it('batching is off: a JSON array is HTTP 400 BAD_USER_INPUT, and none of its operations run', async () => {
    const before = await rowCounts();
    const body = JSON.stringify([{ query: CREATE_ORG, variables: { title: 'Batched' } }, { query: '{ self { id } }' }]);
    const result = await send({ body, headers: { 'content-type': 'application/json' } });
    expect(result.status).toBe(400);
    expect(onlyError(result.body, 'BAD_USER_INPUT').message).toMatch(/batching/i);
    expect(await rowCounts()).toEqual(before);
    expect(await organizationTitles()).not.toContain('Batched');
  });

  it('CSRF prevention: a text/plain POST without a preflight header is HTTP 400 and writes nothing', async () => {
    const before = await rowCounts();
    const body = JSON.stringify({ query: CREATE_ORG, variables: { title: 'Cross Site' } });
    const result = await send({ body, headers: { 'content-type': 'text/plain' } });
    expect(result.status).toBe(400);
    expect(onlyError(result.body, 'BAD_USER_INPUT').message).toMatch(/Cross-Site Request Forgery/);
    expect(await rowCounts()).toEqual(before);
    expect(await organizationTitles()).not.toContain('Cross Site');
  });
});

describe('documents over the limits are refused, and their mutations do not run', () => {
  const limits = loadConfig({}).limits;

  it(`a query deeper than limits.maxDepth (${limits.maxDepth}) is BAD_USER_INPUT naming the limit`, async () => {
    const deepRead = `{ self { organizationRoleBindings { organization { ${nestedOrganization(4)} } } } }`;
    const read = await t.gql(deepRead);
    expect(read.status).toBe(400);
    expect(onlyError(read, 'BAD_USER_INPUT').message).toContain(`Query depth limit of ${limits.maxDepth} exceeded`);

    const before = await rowCounts();
    const deepWrite = await t.gql(`mutation { createOrganization(input: { title: "Too Deep" }) { ${nestedOrganization(4)} } }`);
    expect(deepWrite.status).toBe(400);
    expect(onlyError(deepWrite, 'BAD_USER_INPUT').message).toContain(`Query depth limit of ${limits.maxDepth} exceeded`);
    expect(await rowCounts()).toEqual(before);
    expect(await organizationTitles()).not.toContain('Too Deep');
  });

  it('a query within the depth limit runs', async () => {
    const data = await t.gqlOk(`{ self { organizationRoleBindings { organization { ${nestedOrganization(2)} } } } }`);
    expect(data.self.organizationRoleBindings.length).toBeGreaterThan(0);
  });

  it(`more than limits.maxAliases (${limits.maxAliases}) aliases is BAD_USER_INPUT naming the limit`, async () => {
    const before = await rowCounts();
    const count = limits.maxAliases + 1;
    const mutations = Array.from({ length: count }, (_, i) => `o${i}: createOrganization(input: { title: "Alias ${i}" }) { id }`);
    const result = await t.gql(`mutation { ${mutations.join(' ')} }`);
    expect(result.status).toBe(400);
    expect(onlyError(result, 'BAD_USER_INPUT').message).toContain(`Aliases limit of ${limits.maxAliases} exceeded, found ${count}`);
    expect(await rowCounts()).toEqual(before);
    expect((await organizationTitles()).filter((title) => title.startsWith('Alias '))).toEqual([]);
  });

  it(`more than limits.maxTokens (${limits.maxTokens}) tokens is HTTP 400 BAD_USER_INPUT naming the limit`, async () => {
    const before = await rowCounts();
    const fields = Array.from({ length: limits.maxTokens }, () => 'id').join(' ');
    const result = await t.gql(`mutation { createOrganization(input: { title: "Many Tokens" }) { ${fields} } }`);
    expect(result.status).toBe(400);
    expect(onlyError(result, 'BAD_USER_INPUT').message).toContain(`${limits.maxTokens} tokens`);
    expect(await rowCounts()).toEqual(before);
    expect(await organizationTitles()).not.toContain('Many Tokens');
  });
});

describe('a document over limits.maxCost is refused', () => {
  const maxCost = 50;
  let cheap: TestPlatform;
  beforeAll(async () => {
    cheap = await startTestPlatform({ config: { limits: { ...loadConfig({}).limits, maxCost } } });
  });
  afterAll(async () => {
    await cheap?.close();
  });

  it('a costly query is BAD_USER_INPUT naming the limit, and its mutation does not run', async () => {
    const before = await rowCounts(cheap);
    const costly = `mutation { createOrganization(input: { title: "Costly" }) { id title isDefault createdAt summary { projectCount userCount } ${nestedOrganization(2)} } }`;
    const result: GraphQLResult = await cheap.gql(costly);
    expect(result.status).toBe(400);
    expect(onlyError(result, 'BAD_USER_INPUT').message).toContain(`Query Cost limit of ${maxCost} exceeded`);
    expect(await rowCounts(cheap)).toEqual(before);
    const { organizations } = await cheap.gqlOk(`{ organizations { items { title } } }`);
    expect(organizations.items.map((o: { title: string }) => o.title)).not.toContain('Costly');
  });

  it('a cheap query still runs under the lower limit', async () => {
    expect(await cheap.gqlOk(`{ self { id } }`)).toEqual({ self: { id: 'admin@example.com' } });
  });
});

describe('invalid arguments are BAD_USER_INPUT naming the argument, and change nothing', () => {
  let org: { id: string };
  let project: { id: string };
  beforeAll(async () => {
    ({ createOrganization: org } = await t.gqlOk(CREATE_ORG, { title: 'Validation Inc' }));
    ({ createProject: project } = await t.gqlOk(CREATE_PROJECT, { input: { organizationId: org.id, title: 'Checks' } }));
  });

  it.each([
    ['organization(id)', `{ organization(id: "nope") { id } }`, 'id', 'organization'],
    ['project(id)', `{ project(id: "org-xyz") { id } }`, 'id', 'project'],
    ['projects(organizationId)', `{ projects(organizationId: "proj-abc") { items { id } } }`, 'organizationId', 'organization'],
    ['deleteProject(id)', `mutation { deleteProject(id: "org-xyz") { deleted } }`, 'id', 'project'],
    ['deleteOrganization(id)', `mutation { deleteOrganization(id: "") { deleted } }`, 'id', 'organization'],
    ['deleteApiKey(id)', `mutation { deleteApiKey(id: "sk-whatever") { deleted } }`, 'id', 'apiKey'],
    [
      'addProjectMember(projectId)',
      `mutation { addProjectMember(projectId: "proj-not valid", userId: "a@example.com", role: MEMBER) { role } }`,
      'projectId',
      'project',
    ],
  ])('%s', async (_name, query, field, kind) => {
    const before = await rowCounts();
    const result = await t.gql(query);
    const error = onlyError(result, 'BAD_USER_INPUT');
    expect(error.extensions?.['field']).toBe(field);
    expect(error.message).toContain(`is not a valid ${kind} id`);
    expect(await rowCounts()).toEqual(before);
  });

  const badTitles: [string, string][] = [
    ['empty', ''],
    ['only spaces', '   '],
    ['101 characters', 'x'.repeat(101)],
    ['a control character', 'Bell\u0007Labs'],
    ['a newline', 'Two\nLines'],
  ];

  it.each(badTitles)('createOrganization with a title that is %s', async (_name, title) => {
    const before = await rowCounts();
    const result = await t.gql(CREATE_ORG, { title });
    expect(result.data).toBeNull();
    expect(onlyError(result, 'BAD_USER_INPUT').extensions?.['field']).toBe('input.title');
    expect(await rowCounts()).toEqual(before);
    expect(await organizationTitles()).not.toContain(title.trim());
  });

  it.each(badTitles)('createProject with a title that is %s', async (_name, title) => {
    const before = await rowCounts();
    const result = await t.gql(CREATE_PROJECT, { input: { organizationId: org.id, title } });
    expect(result.data).toBeNull();
    expect(onlyError(result, 'BAD_USER_INPUT').extensions?.['field']).toBe('input.title');
    expect(await rowCounts()).toEqual(before);
  });

  it('a title of exactly 100 characters, padded with spaces, is accepted trimmed', async () => {
    const title = 'y'.repeat(100);
    const { createOrganization } = await t.gqlOk(CREATE_ORG, { title: `  ${title}  ` });
    expect(createOrganization.title).toBe(title);
  });

  it('a namespace that is not a DNS label is BAD_USER_INPUT, and the project is not created', async () => {
    const before = await rowCounts();
    const result = await t.gql(CREATE_PROJECT, {
      input: { organizationId: org.id, title: 'Bad Namespace', assignments: [{ namespace: 'Not_A_DNS_Label' }] },
    });
    const error = onlyError(result, 'BAD_USER_INPUT');
    expect(error.extensions?.['field']).toBe('input.assignments[0].namespace');
    expect(error.message).toContain('Not_A_DNS_Label');
    expect(await rowCounts()).toEqual(before);
    const { projects } = await t.gqlOk(`query($org: ID!) { projects(organizationId: $org) { items { title } } }`, { org: org.id });
    expect(projects.items.map((p: { title: string }) => p.title)).toEqual(['Checks']);
  });

  it('updateProject with an invalid namespace leaves the assignments as they were', async () => {
    const result = await t.gql(`mutation($input: UpdateProjectInput!) { updateProject(input: $input) { id } }`, {
      input: { id: project.id, assignments: [{ namespace: 'ok-namespace' }, { namespace: '-leading-dash' }] },
    });
    expect(onlyError(result, 'BAD_USER_INPUT').extensions?.['field']).toBe('input.assignments[1].namespace');
    const { project: after } = await t.gqlOk(`query($id: ID!) { project(id: $id) { assignments { namespace } } }`, { id: project.id });
    expect(after.assignments).toEqual([{ namespace: expect.stringMatching(/^checks-[a-z0-9]{8}$/) }]);
  });

  it('addOrganizationMember with something that is not an email is BAD_USER_INPUT, and adds no one', async () => {
    const before = await rowCounts();
    const result = await t.gql(`mutation($org: ID!, $user: ID!) { addOrganizationMember(organizationId: $org, userId: $user, role: READER) { role } }`, {
      org: org.id,
      user: 'not an email',
    });
    const error = onlyError(result, 'BAD_USER_INPUT');
    expect(error.extensions?.['field']).toBe('userId');
    expect(error.message).toContain('is not an email address');
    expect(await rowCounts()).toEqual(before);
    const { organization } = await t.gqlOk(`query($id: ID!) { organization(id: $id) { members { items { user { id } } } } }`, { id: org.id });
    expect(organization.members.items).toEqual([{ user: { id: 'admin@example.com' } }]);
  });

  it('a duplicate organization title is CONFLICT, and the first organization is the only one', async () => {
    const before = await rowCounts();
    const result = await t.gql(CREATE_ORG, { title: 'Validation Inc' });
    expect(result.data).toBeNull();
    expect(onlyError(result, 'CONFLICT').message).toContain('Validation Inc');
    expect(await rowCounts()).toEqual(before);
    expect((await organizationTitles()).filter((title) => title === 'Validation Inc')).toHaveLength(1);
  });
});
