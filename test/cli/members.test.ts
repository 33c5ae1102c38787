import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { projectWithKey } from '../support/tenants.js';
import { cliHome, runCli, type CliResult } from './cliProcess.js';

/** Issue 19: `mariner members list|add|remove`, a project's or an organization's, as JSON for scripts. */
describe('mariner members', () => {
  let t: TestPlatform;
  let env: NodeJS.ProcessEnv;
  let home: string;
  let other: { key: string; projectId: string; organizationId: string };
  const cli = (args: string[], key = t.adminKey): Promise<CliResult> => runCli({ ...env, MARINER_URL: t.url, MARINER_API_KEY: key }, args, { cwd: home });
  const json = async (args: string[]) => {
    const result = await cli([...args, '-o', 'json']);
    if (result.code !== 0) throw new Error(`mariner ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
    return JSON.parse(result.stdout);
  };

  beforeAll(async () => {
    t = await startTestPlatform();
    ({ env, home } = cliHome());
    other = await projectWithKey(t, 'other-team', { role: 'OWNER' });
  }, 60_000);
  afterAll(async () => {
    await t?.close();
  });

  it('adds a person to the current project, lists them with their role, changes nothing for a bad role, and removes them', async () => {
    const { project, organization } = await json(['whoami']);
    // A project member must belong to its organization first: the platform says so.
    const notInOrg = await cli(['members', 'add', 'alice@example.com', '--role', 'MEMBER']);
    expect(notInOrg.code).toBe(1);
    expect(notInOrg.stderr).toContain('add them there first (FAILED_PRECONDITION)');
    expect(await json(['members', 'add', 'alice@example.com', '--organization', organization.id, '--role', 'READER'])).toMatchObject({
      organizationId: organization.id,
      role: 'READER',
    });
    const added = await json(['members', 'add', 'alice@example.com', '--role', 'member']);
    expect(added).toMatchObject({ projectId: project.id, user: 'alice@example.com', role: 'MEMBER' });
    const { items } = await json(['members', 'list']);
    expect(items).toContainEqual(expect.objectContaining({ user: 'alice@example.com', role: 'MEMBER', serviceAccount: false }));
    const table = await cli(['members', 'list']);
    expect(table.stdout).toMatch(/USER\s+ROLE\s+SINCE/);
    expect(table.stdout).toMatch(/alice@example\.com\s+MEMBER/);

    const bad = await cli(['members', 'add', 'alice@example.com', '--role', 'READER']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--role must be OWNER or MEMBER in a project');
    expect((await json(['members', 'list'])).items).toContainEqual(expect.objectContaining({ user: 'alice@example.com', role: 'MEMBER' }));

    expect(await json(['members', 'remove', 'alice@example.com'])).toMatchObject({ projectId: project.id, user: 'alice@example.com', deleted: true });
    expect((await json(['members', 'list'])).items.map((m: { user: string }) => m.user)).not.toContain('alice@example.com');
  });

  it("an organization's members with --organization; another organization's owner can neither list nor add to ours", async () => {
    const { organization, project } = await json(['whoami']);
    const { items } = await json(['members', 'list', '--organization', organization.id]);
    expect(items).toContainEqual(expect.objectContaining({ user: 'admin@example.com', role: 'OWNER' }));

    const list = await cli(['members', 'list', '--organization', organization.id], other.key);
    expect(list.code).toBe(1);
    const add = await cli(['members', 'add', 'mallory@example.com', '--project', project.id, '--role', 'OWNER'], other.key);
    expect(add.code).toBe(1);
    expect(add.stderr).toMatch(/\((FORBIDDEN|NOT_FOUND)\)/);
    expect((await json(['members', 'list', '--project', project.id])).items.map((m: { user: string }) => m.user)).not.toContain('mallory@example.com');
  });
});
