/**
 * The console's data screens in headless Chromium against `mariner up --demo-model`, used as a person
 * would: upload a fine-tune file and see it listed; start a fine-tuning job from the page and watch its
 * loss curve draw; build a vector store from an uploaded file and search it; register a cluster and see
 * its key once; see usage charted after a chat; add and remove members; follow the demo model's scaling live.
 * Screenshots go to test-results/console/.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { consoleBuilt, hasChromium, launchChromium, screenshotPath, CHROMIUM_PATH } from './support/browser.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';
import { waitFor } from './support/until.js';

const run = hasChromium || process.env['CI'] ? describe : describe.skip;

let t: TestPlatform;
let browser: Browser;
let context: BrowserContext;
let page: Page;
/** The chat whose usage the usage screen charts; sent early, as it starts the demo model's runtime (the slow part). */
let chat: Promise<unknown>;
const pageErrors: string[] = [];

const TRAINING = [1, 2, 3]
  .map((i) =>
    JSON.stringify({
      messages: [
        { role: 'user', content: `q${i}` },
        { role: 'assistant', content: `a${i}` },
      ],
    }),
  )
  .join('\n');

run(`the console's screens in Chromium (${CHROMIUM_PATH})`, () => {
  beforeAll(async () => {
    const [platform, launched] = await Promise.all([
      consoleBuilt().then(() => startTestPlatform({ embedded: true, defaultCluster: true, demoModel: true })),
      launchChromium(),
    ]);
    t = platform;
    browser = launched;
    await waitFor(
      async () => (await t.gqlOk('{ model(id: "mariner-demo", includeLoading: true) { loadingStatus } }')).model?.loadingStatus,
      (status) => status === 'SUCCEEDED',
      'the demo model loaded',
      60_000,
    );
    const client = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0 });
    chat = client.chat.completions.create({ model: 'mariner-demo', messages: [{ role: 'user', content: 'Hello' }] });
    chat.catch(() => undefined);
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    // The page's WebSockets, so a test can drop the connection as a network would.
    await context.addInitScript(() => {
      const sockets: WebSocket[] = [];
      (window as unknown as { sockets: WebSocket[] }).sockets = sockets;
      window.WebSocket = class extends window.WebSocket {
        constructor(...args: ConstructorParameters<typeof WebSocket>) {
          super(...args);
          sockets.push(this);
        }
      };
    });
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
    await page.getByRole('heading', { name: heading, exact: true }).first().waitFor();
  }

  async function upload(name: string, content: string, purpose: string): Promise<void> {
    await page.getByRole('button', { name: 'File', exact: true }).waitFor();
    await page.locator('input[type="file"]').setInputFiles({ name, mimeType: 'application/octet-stream', buffer: Buffer.from(content) });
    await page.getByRole('combobox', { name: 'Purpose' }).click();
    await page.getByRole('option', { name: purpose, exact: true }).click();
    await page.getByRole('button', { name: 'Upload' }).click();
    await page.getByRole('cell', { name, exact: true }).waitFor({ timeout: 15_000 });
  }

  it('uploads a fine-tune file, sees it listed, starts a job from it and watches the loss curve', { timeout: 90_000 }, async () => {
    await open('Files', 'Files');
    await upload('train.jsonl', TRAINING + '\n', 'fine-tune');
    const row = page.getByTestId('file-row').filter({ hasText: 'train.jsonl' });
    await expect.poll(() => row.textContent()).toContain('fine-tune');
    await page.screenshot({ path: screenshotPath('10-files'), fullPage: true });
    // The file is the project's, through the API too.
    const { files } = await t.gqlOk<{ files: { items: { filename: string; purpose: string }[] } }>('{ files { items { filename purpose } } }');
    expect(files.items).toContainEqual({ filename: 'train.jsonl', purpose: 'fine-tune' });

    await open('Fine-tuning jobs', 'Fine-tuning jobs');
    await page.getByRole('combobox', { name: 'Base model' }).click();
    await page.getByRole('option', { name: 'mariner-demo-base', exact: true }).click();
    await page.getByRole('combobox', { name: 'Training file' }).click();
    await page.getByRole('option', { name: /^train\.jsonl/ }).click();
    await page.getByLabel('Suffix').fill('from-console');
    // Enough epochs for the job to run several seconds (the demo trainer takes 100 ms a step).
    await page.getByLabel('Epochs').fill('30');
    const resubscribed = new Promise<number>((resolve) => {
      page.on('websocket', (ws) =>
        ws.on('framesent', ({ payload }) => {
          const message = JSON.parse(String(payload)) as { type: string; payload?: { query?: string; variables?: { fromOffset?: number } } };
          const offset = message.payload?.variables?.fromOffset;
          if (message.type === 'subscribe' && message.payload?.query?.includes('jobLogs') && offset) resolve(offset);
        }),
      );
    });
    await page.getByRole('button', { name: 'Start job' }).click();
    await page.getByRole('heading', { name: /^ftjob-/ }).waitFor({ timeout: 15_000 });
    // A network drop while the job runs (as soon as its first metrics are in the log): the console reconnects
    // and the log resumes after the last line it has, rather than from the start; no line shows twice, none is lost.
    const log = page.getByTestId('job-log');
    await expect.poll(async () => (await log.textContent()) ?? '', { timeout: 60_000 }).toContain('"type":"metrics"');
    await page.evaluate(() => (window as unknown as { sockets: WebSocket[] }).sockets.forEach((socket) => socket.close(1000)));
    expect(await resubscribed).toBeGreaterThan(0);
    // The loss curve, drawn from the job's metrics events and grown as log lines arrive.
    await page.getByRole('img', { name: 'Training loss by step' }).locator('canvas').waitFor({ timeout: 30_000 });
    await expect.poll(() => page.getByText('succeeded', { exact: true }).count(), { timeout: 60_000 }).toBeGreaterThan(0);
    // The status can arrive before the log's last lines: wait for the whole log, then check none repeats.
    const logLines = async () => ((await page.getByTestId('job-log').textContent()) ?? '').split('\n').filter(Boolean);
    await expect.poll(async () => (await logLines()).filter((line) => line.includes('"type":"metrics"')).length, { timeout: 30_000 }).toBe(90);
    const lines = await logLines();
    expect(new Set(lines).size).toBe(lines.length);
    await page.screenshot({ path: screenshotPath('11-job-loss-curve'), fullPage: true });
    expect(pageErrors).toEqual([]);
  });

  it('builds a vector store from an uploaded file and searches it', { timeout: 60_000 }, async () => {
    await chat; // the demo model's runtime embeds the file
    await open('Vector stores', 'Vector stores');
    await upload('harbour.txt', 'The harbour master keeps the tide tables in the blue cabinet.\n\nLighthouse keepers trim the wicks at dusk.', 'assistants');
    await page.getByRole('checkbox', { name: 'Select harbour.txt' }).check();
    await page.getByLabel("New vector store's name").fill('harbour-notes');
    await page.getByRole('button', { name: 'Create from 1 file' }).click();
    // Listed at once; completed when its file is chunked and embedded (the list follows it).
    await expect.poll(() => page.getByTestId('vector-store-harbour-notes').textContent(), { timeout: 30_000 }).toContain('completed');
    await page.getByRole('textbox', { name: 'Search' }).fill('where are the tide tables?');
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    await page
      .getByTestId('search-result')
      .first()
      .waitFor({ timeout: 30_000 })
      .catch(async (error: unknown) => {
        await page.screenshot({ path: screenshotPath('12-vector-store-search-failed'), fullPage: true });
        throw error;
      });
    expect(await page.getByTestId('search-result').first().textContent()).toContain('harbour.txt');
    await page.screenshot({ path: screenshotPath('12-vector-store-search'), fullPage: true });
    expect(pageErrors).toEqual([]);
  });

  it('registers a cluster and shows its key once; the default cluster is connected', { timeout: 30_000 }, async () => {
    await open('Clusters', 'Clusters');
    await expect.poll(() => page.getByTestId('cluster-default').textContent(), { timeout: 15_000 }).toContain('connected');
    await page.getByLabel("New cluster's name").fill('edge-1');
    await page.getByRole('button', { name: 'Register cluster' }).click();
    const key = (await page.getByTestId('registration-key').textContent())!.trim();
    expect(key).toMatch(/^clusterkey-/);
    await page.getByRole('button', { name: 'Copy registration key' }).waitFor();
    await page.screenshot({ path: screenshotPath('13-cluster-registered') });
    await page.getByRole('button', { name: 'Done' }).click();
    await page.getByTestId('cluster-edge-1').waitFor();
    expect(await page.getByTestId('cluster-edge-1').textContent()).toContain('disconnected');
    // Shown once: not on the page any more, and the API never shows it again.
    expect(await page.content()).not.toContain(key);
    await page.screenshot({ path: screenshotPath('14-clusters'), fullPage: true });
    expect(pageErrors).toEqual([]);
  });

  it('charts usage after a chat, adds and removes members, and follows the model scaling live', { timeout: 120_000 }, async () => {
    await chat;

    // Usage is recorded in batches (every second): the chat is counted once the API says so.
    await waitFor(
      async () => (await t.gqlOk<{ apiUsages: { modelId: string }[] }>('{ apiUsages { modelId } }')).apiUsages,
      (usages) => usages.some((u) => u.modelId === 'mariner-demo'),
      'the chat counted',
    );
    // The whole screen (totals and chart) is one GraphQL request per period shown.
    const usageRequests: string[] = [];
    const countUsage = (request: { url(): string; postData(): string | null }) => {
      const body = request.postData() ?? '';
      if (request.url().endsWith('/graphql') && /apiUsages|modelUsageSummaries/.test(body)) usageRequests.push(body);
    };
    page.on('request', countUsage);
    await open('Usage', 'Usage');
    await page.getByRole('img', { name: 'Requests per model over time' }).locator('canvas').waitFor({ timeout: 15_000 });
    const usage = page.getByRole('table', { name: 'Usage by model and key' });
    await expect.poll(() => usage.textContent()).toContain('mariner-demo');
    await page.getByText('Last 7 days').click();
    await expect.poll(() => usageRequests.length).toBe(2);
    await page.getByRole('img', { name: 'Requests per model over time' }).locator('canvas').waitFor();
    await expect.poll(() => usage.textContent()).toContain('mariner-demo');
    page.off('request', countUsage);
    expect(usageRequests.every((body) => body.includes('modelUsageSummaries') && body.includes('apiUsages'))).toBe(true);
    await page.screenshot({ path: screenshotPath('15-usage'), fullPage: true });

    await open('Members', 'Members');
    await page
      .getByRole('table', { name: /^Members of / })
      .first()
      .waitFor();
    expect(
      await page
        .getByRole('table', { name: /^Members of / })
        .first()
        .textContent(),
    ).toContain('admin@example.com');
    // A new person: into the organization (as a reader), then into its project.
    await page.getByLabel('Email (Default Organization)').fill('New.Person@example.com');
    await page.getByRole('form', { name: 'Add a member to Default Organization' }).getByRole('button', { name: 'Add member' }).click();
    await expect.poll(() => page.getByRole('table', { name: 'Members of Default Organization' }).textContent()).toContain('new.person@example.com');
    await page.getByLabel('Email (project Default Project)').fill('new.person@example.com');
    await page.getByRole('form', { name: 'Add a member to project Default Project' }).getByRole('button', { name: 'Add member' }).click();
    await expect.poll(() => page.getByRole('table', { name: 'Members of project Default Project' }).textContent()).toContain('new.person@example.com');
    await page.screenshot({ path: screenshotPath('16-members'), fullPage: true });

    // Removing: asked first; the organization's last owner (the admin, themselves) is refused with the API's words.
    const organization = page.getByRole('table', { name: 'Members of Default Organization' });
    const project = page.getByRole('table', { name: 'Members of project Default Project' });
    await organization.getByRole('button', { name: 'Remove admin@example.com' }).click();
    const dialog = page.getByRole('dialog', { name: 'Remove a member' });
    await expect.poll(() => dialog.textContent()).toContain('This is you');
    await dialog.getByRole('button', { name: 'Remove', exact: true }).click();
    await expect.poll(() => dialog.getByRole('alert').textContent(), { timeout: 15_000 }).toContain('an organization must keep at least one owner');
    await page.screenshot({ path: screenshotPath('16b-members-last-owner-refused') });
    await dialog.getByRole('button', { name: 'Keep' }).click();
    await dialog.waitFor({ state: 'hidden' });
    expect(await organization.textContent()).toContain('admin@example.com');
    // The new person out of the project (still in the organization), then out of the organization.
    await project.getByRole('button', { name: 'Remove new.person@example.com' }).click();
    await dialog.getByRole('button', { name: 'Remove', exact: true }).click();
    await dialog.waitFor({ state: 'hidden', timeout: 15_000 });
    await expect.poll(() => project.textContent()).not.toContain('new.person@example.com');
    expect(await organization.textContent()).toContain('new.person@example.com');
    await organization.getByRole('button', { name: 'Remove new.person@example.com' }).click();
    expect(await dialog.textContent()).toContain('They leave its projects too');
    await dialog.getByRole('button', { name: 'Remove', exact: true }).click();
    await dialog.waitFor({ state: 'hidden', timeout: 15_000 });
    await expect.poll(() => organization.textContent()).not.toContain('new.person@example.com');
    const { organizations } = await t.gqlOk<{ organizations: { items: { members: { items: { user: { id: string } }[] } }[] } }>(
      '{ organizations { items { members { items { user { id } } } } } }',
    );
    expect(organizations.items.flatMap((o) => o.members.items.map((m) => m.user.id))).not.toContain('new.person@example.com');
    await page.screenshot({ path: screenshotPath('16c-members-removed'), fullPage: true });

    await open('Models', 'Models');
    await page.getByRole('link', { name: 'Scaling of mariner-demo', exact: true }).click();
    await page.getByRole('heading', { name: 'Scaling of mariner-demo' }).waitFor();
    await expect.poll(() => page.getByTestId('scaling-row').first().textContent(), { timeout: 30_000 }).toMatch(/1 \/ 1/);
    // The cluster by its name, not its id.
    expect(await page.getByTestId('scaling-row').first().textContent()).toMatch(/^default/);
    await page.getByRole('img', { name: 'Replicas of mariner-demo over time' }).locator('canvas').waitFor();
    await page.screenshot({ path: screenshotPath('17-scaling'), fullPage: true });
    expect(pageErrors).toEqual([]);
  });

  it('an upload with the session cookie from elsewhere is refused, in the OpenAI error shape', async () => {
    const cookie = (await context.cookies(t.url)).find((c) => c.name === 'mariner_console')!;
    const form = new FormData();
    form.append('purpose', 'assistants');
    form.append('file', new Blob(['x']), 'cross-site.txt');
    const refused = await fetch(`${t.url}/v1/files`, {
      method: 'POST',
      headers: { cookie: `${cookie.name}=${cookie.value}`, origin: 'http://elsewhere.example', 'sec-fetch-site': 'cross-site' },
      body: form,
    });
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('forbidden');
    const { files } = await t.gqlOk<{ files: { items: { filename: string }[] } }>('{ files { items { filename } } }');
    expect(files.items.map((f) => f.filename)).not.toContain('cross-site.txt');
  });

  it("another organization's console session uploads to its own project only, and cannot see or delete the admin's files", async () => {
    const other = await projectWithKey(t, 'console-files-other');
    const signIn = await fetch(`${t.url}/console/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-mariner-csrf': '1' },
      body: JSON.stringify({ apiKey: other.key }),
    });
    const cookie = signIn.headers.getSetCookie()[0]!.split(';')[0]!;
    const headers = { cookie, 'x-mariner-csrf': '1' };
    const form = new FormData();
    form.append('purpose', 'assistants');
    form.append('file', new Blob(['theirs']), 'theirs.txt');
    const uploaded = await fetch(`${t.url}/v1/files`, { method: 'POST', headers, body: form });
    expect(uploaded.status).toBe(200);
    const listed = (await (await fetch(`${t.url}/v1/files`, { headers })).json()) as { data: { filename: string }[] };
    expect(listed.data.map((f) => f.filename)).toEqual(['theirs.txt']);
    const { files } = await t.gqlOk<{ files: { items: { id: string; filename: string }[] } }>('{ files { items { id filename } } }');
    const admins = files.items.find((f) => f.filename === 'train.jsonl')!;
    expect((await fetch(`${t.url}/v1/files/${admins.id}`, { method: 'DELETE', headers })).status).toBe(404);
    const after = await t.gqlOk<{ files: { items: { id: string; filename: string }[] } }>('{ files { items { id filename } } }');
    expect(after.files.items.map((f) => f.filename)).toContain('train.jsonl');
    expect(after.files.items.map((f) => f.filename)).not.toContain('theirs.txt');
  });
});
