import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { buildConsole } from '../../console/build.mjs';

/**
 * The console's end-to-end tests run in Debian's Chromium (`apt-get install chromium`; .ci/run installs
 * it), driven by playwright-core: no browser is downloaded. MARINER_TEST_CHROMIUM names another binary.
 */
export const CHROMIUM_PATH = process.env['MARINER_TEST_CHROMIUM'] ?? '/usr/bin/chromium';
export const hasChromium = existsSync(CHROMIUM_PATH);

/** Where the screenshots go (git-ignored): test-results/console/. */
export const SCREENSHOTS_DIR = fileURLToPath(new URL('../../test-results/console/', import.meta.url));

/** console/dist as `npm start` keeps it: built when a source changed. */
export async function consoleBuilt(): Promise<void> {
  await buildConsole({ quiet: true });
}

export async function launchChromium(): Promise<Browser> {
  mkdirSync(SCREENSHOTS_DIR, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    // As root in a container (CI) Chromium's sandbox cannot start; the test pages are our own.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  });
}

export function screenshotPath(name: string): string {
  return path.join(SCREENSHOTS_DIR, `${name}.png`);
}
