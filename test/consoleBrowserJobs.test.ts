/**
 * The console's batch jobs and notebooks in headless Chromium against a platform with its embedded
 * local-executor cluster (batch jobs allowed): start a batch job from the page and watch its log arrive
 * live; cancel a running one from the list and see it change without reloading; delete it; create a
 * notebook and see the cluster's refusal as the API says it; a reader sees neither form nor buttons (the
 * notebook "open" hand-off, GET /console/notebook, is tested over HTTP in test/console.test.ts). Screenshots
 * go to test-results/console/.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_ROLE_SCOPES } from '../schema/rbac/roleScopes.js';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { consoleBuilt, hasChromium, launchChromium, screenshotPath, CHROMIUM_PATH } from './support/browser.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';

const run = hasChromium || process.env['CI'] ? describe : describe.skip;

let t: TestPlatform;
let browser: Browser;
let context: BrowserContext;
let page: Page;
const pageErrors: string[] = [];

/**
 * LLMariner's default roles all write jobs; a deployment's own table (MARINER_ROLE_SCOPES_FILE) can make the
 * project owner (a READER service-account key) read-only, which is the reader this test signs in as.
 */
function readOnlyProjectOwners(): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'mariner-roles-')), 'roles.json');
  const readOnly = DEFAULT_ROLE_SCOPES.projectOwner.filter((scope) => scope.endsWith('.read'));
  writeFileSync(file, JSON.stringify({ ...DEFAULT_ROLE_SCOPES, projectOwner: readOnly }));
  return file;
}

run(`the console's batch jobs and notebooks in Chromium (${CHROMIUM_PATH})`, () => {
  beforeAll(async () => {
    const [platform, launched] = await Promise.all([
      consoleBuilt().then(() =>
        startTestPlatform({
          embedded: true,
          defaultCluster: true,
          config: { roleScopesFile: readOnlyProjectOwners(), jobs: { localBatchJobs: true, dispatchIntervalMs: 200 } },
        }),
      ),
      launchChromium(),
    ]);
    t = platform;
    browser = launched;
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
    page.on('pageerror', (error) => pageErrors.push(error.message));
    await page.goto(`${t.url}/console/`);
    await page.getByLabel('API key').fill(t.adminKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Models' }).waitFor();
  }, 120_000);
  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await t?.close();
  });

  async function open(screen: string, heading: string): Promise<void> {
    await page.getByRole('link', { name: screen, exact: true }).click();
    await page.getByRole('heading', { name: heading, exact: true }).waitFor();
  }

  it('starts a batch job from the page and follows its log live; cancels and deletes a running one from the list', { timeout: 60_000 }, async () => {
    await open('Batch jobs', 'Batch jobs');
    await page.getByText('No batch jobs yet.').waitFor();
    await page.getByLabel('Command').fill('echo hello from the batch job; echo second line');
    await page.getByRole('button', { name: 'Start batch job' }).click();
    const log = page.getByTestId('job-log');
    await expect.poll(() => log.textContent(), { timeout: 30_000 }).toContain('hello from the batch job');
    await expect.poll(() => log.textContent()).toContain('second line');
    await page.getByText('succeeded', { exact: true }).waitFor({ timeout: 20_000 });
    await page.screenshot({ path: screenshotPath('20-batch-job'), fullPage: true });

    await page.getByRole('link', { name: '← Batch jobs' }).click();
    await page.getByLabel('Command').fill('echo waiting; sleep 120');
    await page.getByRole('button', { name: 'Start batch job' }).click();
    await expect.poll(() => log.textContent(), { timeout: 30_000 }).toContain('waiting');
    await page.getByRole('link', { name: '← Batch jobs' }).click();
    const table = page.getByRole('table', { name: 'Batch jobs' });
    const running = table.getByRole('row').filter({ hasText: 'sleep 120' });
    await running.getByText('running').waitFor();
    await page.screenshot({ path: screenshotPath('21-batch-jobs'), fullPage: true });
    await running.getByRole('button', { name: /^Cancel / }).click();
    // The status changes on the list by itself (jobsUpdated), no reload.
    await running.getByText('cancelled').waitFor({ timeout: 20_000 });
    await running.getByRole('button', { name: /^Delete / }).click();
    await expect.poll(() => table.textContent()).not.toContain('sleep 120');
    expect(await table.textContent()).toContain('hello from the batch job');
    const { batchJobs } = await t.gqlOk<{ batchJobs: { items: { command: string }[] } }>('{ batchJobs { items { command } } }');
    expect(batchJobs.items.map((j) => j.command)).toEqual(['echo hello from the batch job; echo second line']);
    expect(pageErrors).toEqual([]);
  });

  it('creates a notebook and shows why the cluster cannot run it, then deletes it', { timeout: 60_000 }, async () => {
    await open('Notebooks', 'Notebooks');
    await page.getByText('No notebooks yet.').waitFor();
    await page.getByLabel('Name').fill('Bad Name');
    await page.getByRole('button', { name: 'Create notebook' }).click();
    // Refused by the API, shown as it says it; nothing created.
    await page.getByText('The API refused').waitFor();
    expect((await t.gqlOk<{ notebooks: { totalItems: number } }>('{ notebooks { totalItems } }')).notebooks.totalItems).toBe(0);

    await page.getByLabel('Name').fill('my-notebook');
    await page.getByRole('button', { name: 'Create notebook' }).click();
    const table = page.getByRole('table', { name: 'Notebooks' });
    const row = table.getByRole('row').filter({ hasText: 'my-notebook' });
    await row.waitFor();
    // The local executor does not run Jupyter: the notebook fails with the agent's reason, read again until it settles.
    await row.getByText('failed').waitFor({ timeout: 30_000 });
    await row.getByText(/Kubernetes cluster/).waitFor();
    expect(await row.getByRole('link', { name: 'Open' }).count()).toBe(0);
    await page.screenshot({ path: screenshotPath('22-notebooks'), fullPage: true });
    await row.getByRole('button', { name: 'Delete my-notebook' }).click();
    await expect.poll(() => table.count().then(async (n) => (n === 0 ? '' : await table.textContent())), { timeout: 30_000 }).not.toContain('my-notebook');
    expect(pageErrors).toEqual([]);
  });

  it('a reader sees batch jobs and notebooks without any write action', { timeout: 60_000 }, async () => {
    const { createApiKey } = await t.gqlOk('mutation { createApiKey(input: { name: "reader", isServiceAccount: true, role: READER }) { secret } }');
    const readerContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    try {
      const reader = await readerContext.newPage();
      await reader.goto(`${t.url}/console/`);
      await reader.getByLabel('API key').fill(createApiKey.secret);
      await reader.getByRole('button', { name: 'Sign in' }).click();
      await reader.getByText('read only').first().waitFor({ state: 'attached' });
      await reader.getByRole('link', { name: 'Batch jobs', exact: true }).click();
      await reader.getByRole('table', { name: 'Batch jobs' }).getByText('hello from the batch job').waitFor();
      expect(await reader.getByRole('button', { name: /Start batch job|^Cancel|^Delete/ }).count()).toBe(0);
      await reader.getByRole('link', { name: 'Notebooks', exact: true }).click();
      await reader.getByRole('heading', { name: 'Notebooks', exact: true }).waitFor();
      expect(await reader.getByRole('button', { name: /Create notebook|^Stop|^Start|^Delete/ }).count()).toBe(0);
      await reader.screenshot({ path: screenshotPath('23-reader-notebooks'), fullPage: true });
    } finally {
      await readerContext.close();
    }
  });
});
