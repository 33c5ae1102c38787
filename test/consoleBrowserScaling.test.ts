/**
 * The e2e step "the demo model's runtime scales up under load and back", in headless Chromium against the platform
 * `mariner up --demo-model` runs (its embedded agent, the local executor, real llama.cpp replicas), with the
 * autoscaler on and short windows: the person opens the model's scaling page, a load of requests arrives, and the
 * page, live from the `runtimeScaling` subscription alone (no reload), shows the replicas rise to two and fall
 * back to one, the chart's history with them, and the autoscaler's decisions. Screenshots at the peak and after.
 */
import OpenAI from 'openai';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { consoleBuilt, hasChromium, launchChromium, screenshotPath, CHROMIUM_PATH } from './support/browser.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { waitFor } from './support/until.js';

const run = hasChromium || process.env['CI'] ? describe : describe.skip;

let t: TestPlatform;
let browser: Browser;
let context: BrowserContext;
let page: Page;
const pageErrors: string[] = [];

run(`the demo model's scaling under load, live in Chromium (${CHROMIUM_PATH})`, () => {
  beforeAll(async () => {
    const [platform, launched] = await Promise.all([
      consoleBuilt().then(() =>
        startTestPlatform({
          embedded: true,
          defaultCluster: true,
          demoModel: true,
          config: {
            inference: { runtimeFreshSeconds: 90, requestWaitSeconds: 90 },
            // One request in flight per replica, one to two replicas, decided every 200 ms over a 2 s window:
            // the test sees each decision in seconds. Never to zero (the page shows 1 again after the load).
            autoscaler: {
              enabled: true,
              syncPeriodMs: 200,
              defaults: {
                targetInFlight: 1,
                minReplicas: 1,
                maxReplicas: 2,
                maxScaleUpRate: 3,
                maxScaleDownRate: 0.5,
                metricsWindowSeconds: 2,
                scaleToZeroGraceSeconds: 3600,
              },
            },
          },
        }),
      ),
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
    context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
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

  it('a load of requests makes the runtime scale up to two replicas and back to one, on the page as it happens', { timeout: 420_000 }, async () => {
    const client = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0, timeout: 120_000 });
    // The first request activates the model (on-demand allocation): its first replica starts.
    await client.chat.completions.create({ model: 'mariner-demo', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 3 });

    // What the page hears on its WebSocket: the scaling page has no other source.
    let reports = 0;
    page.on('websocket', (ws) =>
      ws.on('framereceived', ({ payload }) => {
        if (String(payload).includes('"runtimeScaling"')) reports += 1;
      }),
    );
    await page.getByRole('link', { name: 'Scaling of mariner-demo', exact: true }).click();
    await page.getByRole('heading', { name: 'Scaling of mariner-demo' }).waitFor();
    const row = page.getByTestId('scaling-row').first();
    const summary = page.getByTestId('replicas-summary');
    await expect.poll(() => row.textContent(), { timeout: 90_000 }).toMatch(/1 \/ 1/);
    expect(await row.textContent()).toContain('1–2');

    // Load: four requests in flight at a time against a target of one per replica.
    let loading = true;
    let served = 0;
    const failures: string[] = [];
    const loops = Array.from({ length: 4 }, async () => {
      while (loading) {
        try {
          await client.completions.create({ model: 'mariner-demo', prompt: 'Count slowly:', max_tokens: 48 });
          served += 1;
        } catch (error) {
          failures.push((error as Error).message);
        }
      }
    });
    try {
      // The peak: two replicas ready, on the row and in the chart's history, with the decision that made them.
      await expect.poll(() => row.textContent(), { timeout: 180_000, interval: 500 }).toMatch(/2 \/ 2/);
      await expect.poll(() => summary.textContent(), { timeout: 30_000 }).toMatch(/at most 2 ready/);
      await expect.poll(() => page.getByLabel('Autoscaler decisions').textContent(), { timeout: 30_000 }).toMatch(/scaled up: /);
      await page.getByRole('img', { name: 'Replicas of mariner-demo over time' }).locator('canvas').waitFor();
      await page.screenshot({ path: screenshotPath('18-scaling-peak'), fullPage: true });
    } finally {
      loading = false;
      await Promise.all(loops);
    }
    expect(served).toBeGreaterThan(4);
    expect(failures).toEqual([]);

    // Idle again: back to one replica; the chart keeps the peak it drew.
    await expect.poll(() => row.textContent(), { timeout: 180_000, interval: 500 }).toMatch(/1 \/ 1/);
    await expect.poll(() => summary.textContent(), { timeout: 30_000 }).toMatch(/^Now 1 ready of 1 desired · at most 2 ready/);
    await expect.poll(() => page.getByLabel('Autoscaler decisions').textContent(), { timeout: 30_000 }).toMatch(/scaled down: /);
    await page.screenshot({ path: screenshotPath('19-scaling-after'), fullPage: true });
    // All of it came over the subscription, the page never reloaded.
    expect(reports).toBeGreaterThan(3);
    expect(pageErrors).toEqual([]);
  });
});
