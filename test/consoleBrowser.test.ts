/**
 * The web console end to end, in headless Chromium (Debian's `chromium`, driven by playwright-core)
 * against a whole platform with the demo model: what a newcomer does after `npm start`. Sign in with a
 * key; create an API key and see it once; chat in the playground and watch the answer stream in; see the
 * demo model's runtime on the models page; a reader sees no write buttons (at phone width, dark); a
 * cross-site request with the session cookie is refused; sign out; and the console never made a request
 * outside the platform's origin. Screenshots of each screen go to test-results/console/ (git-ignored).
 */
import { createServer, type Server } from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI, { toFile } from 'openai';
import type { Browser, Page } from 'playwright-core';
import { DEFAULT_ROLE_SCOPES } from '../schema/rbac/roleScopes.js';
import { consoleBuilt, hasChromium, launchChromium, screenshotPath, CHROMIUM_PATH } from './support/browser.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { waitFor } from './support/until.js';

// CI installs Chromium (.ci/run); elsewhere, without it, the suite says so and skips.
const run = hasChromium || process.env['CI'] ? describe : describe.skip;

let t: TestPlatform;
let browser: Browser;
let evil: Server;
let evilUrl: string;

run(`the console in Chromium (${CHROMIUM_PATH})`, () => {
  beforeAll(async () => {
    // An operator's role table where project roles read only: a READER service-account key (projectOwner) cannot write.
    const dir = mkdtempSync(path.join(tmpdir(), 'mariner-console-'));
    const roleScopesFile = path.join(dir, 'roles.json');
    const readOnly = (scopes: string[]) => scopes.filter((s) => s.endsWith('.read'));
    writeFileSync(
      roleScopesFile,
      JSON.stringify({
        ...DEFAULT_ROLE_SCOPES,
        projectOwner: readOnly(DEFAULT_ROLE_SCOPES.projectOwner),
        projectMember: readOnly(DEFAULT_ROLE_SCOPES.projectMember),
      }),
    );
    const [platform, launched] = await Promise.all([
      consoleBuilt().then(() => startTestPlatform({ embedded: true, defaultCluster: true, demoModel: true, config: { roleScopesFile } })),
      launchChromium(),
    ]);
    t = platform;
    browser = launched;
    // A page on another site (another port: another origin), for the cross-site attempt.
    evil = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>elsewhere</title><p>elsewhere</p>'));
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve));
    evilUrl = `http://localhost:${(evil.address() as { port: number }).port}`;
    await waitFor(
      async () => (await t.gqlOk('{ model(id: "mariner-demo", includeLoading: true) { loadingStatus } }')).model?.loadingStatus,
      (status) => status === 'SUCCEEDED',
      'the demo model loaded',
      60_000,
    );
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    evil?.close();
    await t?.close();
  });

  /** Every request the page makes, to check none leaves the platform's origin. */
  function recordRequests(page: Page): string[] {
    const urls: string[] = [];
    page.on('request', (request) => urls.push(request.url()));
    page.on('websocket', (ws) => urls.push(ws.url()));
    return urls;
  }

  it('a newcomer signs in, creates a key, chats, sees the runtime; a reader sees no write buttons; cross-site is refused', { timeout: 180_000 }, async () => {
    const origin = new URL(t.url).origin;
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light' });
    const page = await context.newPage();
    const requests = recordRequests(page);
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    const scriptBytes: number[] = [];
    page.on('response', (response) => {
      if (response.url().endsWith('.js')) {
        scriptBytes.push(Number(response.headers()['content-length'] ?? 0));
      }
    });

    // The platform's root sends a browser to the console; time to interactive = the sign-in form usable.
    const started = Date.now();
    await page.goto(`${t.url}/`);
    await page.getByLabel('API key').waitFor();
    const timeToInteractiveMs = Date.now() - started;
    expect(page.url()).toBe(`${origin}/console/`);
    const firstScreenJsGzipped = scriptBytes.reduce((a, b) => a + b, 0);
    console.log(`console: first screen ${firstScreenJsGzipped} bytes of JS (gzipped, as sent), interactive in ${timeToInteractiveMs} ms`);
    expect(firstScreenJsGzipped).toBeGreaterThan(0);
    expect(firstScreenJsGzipped).toBeLessThanOrEqual(300 * 1024);
    await page.screenshot({ path: screenshotPath('01-sign-in') });

    // A wrong key: the API's words.
    await page.getByLabel('API key').fill('sk-wrong');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent(), { timeout: 15_000 }).toContain('Invalid API key');

    await page.getByLabel('API key').fill(t.adminKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Models' }).waitFor();
    await page.getByTestId('model-mariner-demo').waitFor();
    // The credential is in an HttpOnly cookie: no script sees it, nothing is stored.
    expect(await page.evaluate(() => document.cookie)).not.toContain('mariner_console');
    expect(await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }))).not.toContain('sk-');
    const cookies = await context.cookies();
    expect(cookies.find((c) => c.name === 'mariner_console')).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/' });

    // API keys: create one, shown once with a copy button.
    await page.getByRole('link', { name: 'API keys' }).click();
    await page.getByLabel("New key's name").fill('from-the-console');
    await page.getByRole('button', { name: 'Create key' }).click();
    const secret = (await page.getByTestId('new-api-key').textContent())!.trim();
    expect(secret).toMatch(/^sk-\w{20,}/);
    await page.getByRole('button', { name: 'Copy key' }).waitFor();
    await page.screenshot({ path: screenshotPath('02-api-key-created') });
    await page.getByRole('button', { name: 'Done' }).click();
    await page.getByRole('cell', { name: 'from-the-console', exact: true }).waitFor();
    expect(await page.content()).not.toContain(secret);
    // The key works, against the API itself.
    expect((await t.gql('{ self { id } }', {}, { token: secret })).status).toBe(200);

    // Playground: the demo model answers, streamed (the text grows in several steps).
    await page.getByRole('link', { name: 'Playground' }).click();
    await page.getByRole('combobox', { name: 'Model' }).click();
    await page.getByRole('option', { name: 'mariner-demo', exact: true }).click();
    await page.getByRole('textbox', { name: 'Message' }).fill('Hello');
    await page.evaluate(() => {
      const w = window as unknown as { steps: Set<string> };
      w.steps = new Set();
      new MutationObserver(() => {
        const text = document.querySelector('[data-testid="message-assistant"]')?.textContent ?? '';
        if (text) w.steps.add(text);
      }).observe(document.body, { subtree: true, childList: true, characterData: true });
    });
    await page.getByRole('button', { name: 'Send' }).click();
    // The conversation is busy while the answer streams (the first request also starts the demo model's runtime).
    const conversation = page.getByRole('log', { name: 'Conversation' });
    await expect
      .poll(async () => (await conversation.getAttribute('aria-busy')) === 'false' && (await page.getByTestId('message-assistant').count()) === 1, {
        timeout: 90_000,
      })
      .toBe(true);
    const steps = await page.evaluate(() => (window as unknown as { steps: Set<string> }).steps.size);
    const answer = (await page.getByTestId('message-assistant').textContent())!;
    expect(answer.length).toBeGreaterThan('mariner-demo'.length);
    expect(steps).toBeGreaterThan(2);
    expect(await page.getByText(`curl ${origin}/v1/chat/completions`).count()).toBe(1);
    await page.screenshot({ path: screenshotPath('03-playground'), fullPage: true });

    // Models: the demo model's runtime on the default cluster, live.
    await page.getByRole('link', { name: 'Models' }).click();
    const runtime = page.getByTestId('model-mariner-demo').getByTestId('runtime-row');
    await runtime.first().waitFor({ timeout: 30_000 });
    await expect.poll(() => runtime.first().textContent(), { timeout: 30_000 }).toMatch(/1 \/ 1/);
    await expect.poll(() => page.getByRole('button', { name: 'Deactivate mariner-demo' }).count(), { timeout: 15_000 }).toBe(1);
    // Its replicas over time, drawn by the chart library loaded with this page only.
    await page.getByRole('img', { name: 'Replicas of mariner-demo over time' }).locator('canvas').waitFor({ timeout: 15_000 });
    await page.screenshot({ path: screenshotPath('04-models'), fullPage: true });

    // Cross-site: a page elsewhere posts to /graphql with the browser's cookie (SameSite=Strict keeps it
    // from being sent; were it sent, the gateway refuses it) and creates nothing; with the cookie
    // sent by hand from elsewhere, the gateway refuses it.
    const elsewhere = await context.newPage();
    await elsewhere.goto(evilUrl);
    const attempt = await elsewhere.evaluate(async (url) => {
      const response = await fetch(`${url}/graphql`, {
        method: 'POST',
        credentials: 'include',
        headers: { 'content-type': 'text/plain' },
        body: JSON.stringify({ query: 'mutation { createApiKey(input: { name: "cross-site" }) { secret } }' }),
      }).catch((error: unknown) => String(error));
      return typeof response === 'string' ? response : response.status;
    }, t.url);
    expect(attempt).not.toBe(200);
    const cookie = cookies.find((c) => c.name === 'mariner_console')!;
    const forged = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-mariner-csrf': '1',
        cookie: `${cookie.name}=${cookie.value}`,
        origin: evilUrl,
        'sec-fetch-site': 'cross-site',
      },
      body: JSON.stringify({ query: 'mutation { createApiKey(input: { name: "cross-site" }) { secret } }' }),
    });
    expect(forged.status).toBe(403);
    const names = (await t.gqlOk<{ apiKeys: { items: { name: string }[] } }>('{ apiKeys { items { name } } }')).apiKeys.items.map((k) => k.name);
    expect(names).toContain('from-the-console');
    expect(names).not.toContain('cross-site');
    await elsewhere.close();

    // Sign out: back to the sign-in form, and the old cookie no longer works.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('API key').waitFor();
    const replay = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-mariner-csrf': '1', cookie: `${cookie.name}=${cookie.value}` },
      body: JSON.stringify({ query: '{ self { id } }' }),
    });
    expect(replay.status).toBe(401);

    // A reader, at phone width in dark mode: the same screens, no write buttons.
    const { createApiKey } = await t.gqlOk('mutation { createApiKey(input: { name: "reader", isServiceAccount: true, role: READER }) { secret } }');
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, colorScheme: 'dark', isMobile: true, hasTouch: true });
    const readerPage = await phone.newPage();
    requests.push(...recordRequests(readerPage));
    await readerPage.goto(`${t.url}/console/`);
    await readerPage.getByLabel('API key').fill(createApiKey.secret);
    await readerPage.getByRole('button', { name: 'Sign in' }).click();
    await readerPage.getByTestId('model-mariner-demo').waitFor();
    await readerPage.getByText('read only').first().waitFor({ state: 'attached' });
    expect(await readerPage.getByRole('button', { name: /Activate|Deactivate/ }).count()).toBe(0);
    await readerPage.screenshot({ path: screenshotPath('05-reader-models-phone-dark'), fullPage: true });
    await readerPage.getByRole('button', { name: 'Menu' }).click();
    await readerPage.getByRole('link', { name: 'API keys' }).click();
    await readerPage.getByRole('table', { name: 'API keys' }).waitFor();
    expect(await readerPage.getByRole('button', { name: 'Create key' }).count()).toBe(0);
    expect(await readerPage.getByRole('button', { name: /^Delete key/ }).count()).toBe(0);
    await readerPage.screenshot({ path: screenshotPath('06-reader-keys-phone-dark'), fullPage: true });
    // The newer screens too: files, clusters and jobs list what there is, with nothing to upload, register or start.
    await readerPage.getByRole('button', { name: 'Menu' }).click();
    await readerPage.getByRole('link', { name: 'Clusters', exact: true }).click();
    await readerPage.getByRole('heading', { name: 'Clusters', exact: true }).waitFor();
    await readerPage.getByRole('button', { name: 'Refresh' }).waitFor();
    expect(await readerPage.getByRole('button', { name: 'Register cluster' }).count()).toBe(0);
    // A role without the clusters scope is told so in words, not with the API's FORBIDDEN text.
    await readerPage.getByText('No access to clusters').waitFor();
    await readerPage.screenshot({ path: screenshotPath('08-reader-clusters-phone-dark'), fullPage: true });
    await readerPage.getByRole('button', { name: 'Menu' }).click();
    await readerPage.getByRole('link', { name: 'Files', exact: true }).click();
    await readerPage.getByRole('heading', { name: 'Files', exact: true }).waitFor();
    expect(await readerPage.getByRole('button', { name: 'Upload' }).count()).toBe(0);
    await readerPage.getByRole('button', { name: 'Menu' }).click();
    await readerPage.getByRole('link', { name: 'Fine-tuning jobs', exact: true }).click();
    await readerPage.getByRole('heading', { name: 'Fine-tuning jobs' }).waitFor();
    expect(await readerPage.getByRole('button', { name: 'Start job' }).count()).toBe(0);
    await phone.close();

    expect(pageErrors).toEqual([]);
    // Nothing outside the platform: no CDN, no fonts, no telemetry.
    const outside = requests.filter((url) => !url.startsWith('data:') && new URL(url.replace(/^ws/, 'http')).origin !== origin);
    expect(outside).toEqual([]);
    expect(requests.some((url) => url.startsWith(`${origin.replace('http', 'ws')}/graphql`))).toBe(true);
    await context.close();
  });
  it('a fine-tuning job on the demo base model is listed, and its page follows its log live until it succeeds', { timeout: 150_000 }, async () => {
    const client = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0 });
    const lines = [1, 2, 3].map((i) =>
      JSON.stringify({
        messages: [
          { role: 'user', content: `q${i}` },
          { role: 'assistant', content: `a${i}` },
        ],
      }),
    );
    const file = await client.files.create({ file: await toFile(Buffer.from(lines.join('\n') + '\n'), 'train.jsonl'), purpose: 'fine-tune' });
    const job = await client.fineTuning.jobs.create({
      model: 'mariner-demo-base',
      training_file: file.id,
      suffix: 'console',
      hyperparameters: { n_epochs: 1 },
    });

    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    await page.goto(`${t.url}/console/#/jobs`);
    await page.getByLabel('API key').fill(t.adminKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('link', { name: job.id }).click();
    await page.getByRole('heading', { name: job.id }).waitFor();
    expect(pageErrors).toEqual([]);
    // Lines arrive while the page is open (jobLogs), and the status follows to the end.
    const log = page.getByTestId('job-log');
    await expect.poll(async () => (await log.textContent()) ?? '', { timeout: 60_000 }).not.toContain('No log lines yet.');
    await expect.poll(() => page.getByText('succeeded', { exact: true }).count(), { timeout: 60_000 }).toBeGreaterThan(0);
    await page.screenshot({ path: screenshotPath('07-job-log'), fullPage: true });
    expect(pageErrors).toEqual([]);
    await context.close();
  });
});
