/**
 * The documentation site and the generated settings reference: docs/reference/settings.md is what
 * `npm run docs:settings` writes from lib/config.ts today (a setting added, removed or re-documented
 * without regenerating it fails here), and `npm run docs:build` (VitePress) builds every page, failing on a
 * dead link between pages.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { configSettingNames, settingsReference, SETTINGS_PAGE } from './docs/settingsReference.js';
import { ROOT } from './docs/docsCheck.js';

const tempDirs: string[] = [];
afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

function vitepressBuild(docsDir: string, outDir: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'node_modules/vitepress/bin/vitepress.js'), 'build', docsDir, '--outDir', outDir], {
      cwd: ROOT,
      env: { ...process.env, NODE_ENV: 'production' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (output += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (output += c));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
  });
}

function markdownPages(dir: string, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    if (entry.name.startsWith('.')) return [];
    if (entry.isDirectory()) return markdownPages(path.join(dir, entry.name), `${prefix}${entry.name}/`);
    return entry.name.endsWith('.md') ? [`${prefix}${entry.name}`] : [];
  });
}

describe('the settings reference', () => {
  it('docs/reference/settings.md is current: npm run docs:settings writes exactly the committed page', () => {
    const committed = readFileSync(SETTINGS_PAGE, 'utf8');
    expect(committed === settingsReference(), 'docs/reference/settings.md is stale: run npm run docs:settings and commit it').toBe(true);
  });

  it('lists every setting lib/config.ts reads, the vector store ones among them (issue 24 item 1)', () => {
    const page = readFileSync(SETTINGS_PAGE, 'utf8');
    for (const name of configSettingNames()) expect(page).toContain(`\`${name}\``);
    for (const name of ['MARINER_VECTOR_INDEX', 'MARINER_EMBEDDING_MODEL', 'MARINER_MILVUS_ADDRESS', 'MARINER_INGESTION_CONCURRENCY']) {
      expect(page).toMatch(new RegExp(`\\| \`${name}\` \\| [^|]+ \\| [^—|]`));
    }
  });
});

describe('the documentation site (VitePress)', () => {
  it('builds every page of docs/ into HTML', { timeout: 240_000 }, async () => {
    const outDir = mkdtempSync(path.join(tmpdir(), 'mariner-docs-site-'));
    tempDirs.push(outDir);
    const { code, output } = await vitepressBuild('docs', outDir);
    expect(code, output).toBe(0);
    const pages = markdownPages(path.join(ROOT, 'docs'));
    console.log(`docs site: ${pages.length} pages built`);
    expect(pages.length).toBeGreaterThanOrEqual(14);
    for (const page of pages) {
      const html = path.join(outDir, page.replace(/\.md$/, '.html'));
      expect(existsSync(html), `${page} has no ${path.relative(outDir, html)}`).toBe(true);
    }
  });

  it('a link to a page that does not exist fails the build, naming it', { timeout: 120_000 }, async () => {
    const docs = mkdtempSync(path.join(tmpdir(), 'mariner-docs-deadlink-'));
    tempDirs.push(docs);
    mkdirSync(path.join(docs, '.vitepress'));
    writeFileSync(path.join(docs, '.vitepress', 'config.mts'), "export default { title: 'dead link' };\n");
    writeFileSync(path.join(docs, 'index.md'), '# Home\n\nSee [the guide](./no-such-guide.md).\n');
    const { code, output } = await vitepressBuild(docs, path.join(docs, 'out'));
    expect(code).not.toBe(0);
    expect(output).toContain('no-such-guide');
  });
});
