/**
 * The documentation's examples, executed (test/docs/docsCheck.ts, `npm run docs:check`): every block of
 * README.md and docs/ marked `<!-- docs:run -->` runs against one fresh `mariner up --demo-model` (the
 * compiled build, a child process) and must pass. Then the runner itself: a page with a broken example
 * makes `npm run docs:check` fail, naming the file and line and showing the block's output.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectBlocks, docFiles, DocsSyntaxError, extractBlocks, report, ROOT, runPages, startDocsServer, type DocsServer } from './docs/docsCheck.js';

let server: DocsServer;
const tempDirs: string[] = [];

beforeAll(async () => {
  server = await startDocsServer();
}, 120_000);

afterAll(async () => {
  await server?.stop();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

function page(name: string, text: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'mariner-docs-test-'));
  tempDirs.push(dir);
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** `npm run docs:check -- --url <server> FILE`, as a user runs it. */
function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'node_modules/tsx/dist/cli.mjs'), path.join(ROOT, 'test/docs/docsCheck.ts'), ...args], {
      cwd: ROOT,
      env: { ...process.env, MARINER_API_KEY: server.apiKey },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('the documentation', () => {
  it('every runnable example in README.md and docs/ passes against a fresh mariner up --demo-model', { timeout: 240_000 }, async () => {
    const pages = collectBlocks(docFiles());
    const total = pages.reduce((n, blocks) => n + blocks.length, 0);
    expect(total, 'README.md and docs/ should hold runnable examples').toBeGreaterThan(10);
    const results = await runPages(pages, server, { concurrency: 2 });
    const text = report(results, pages.length, total);
    console.log(text.split('\n').at(-1));
    expect(results.filter((r) => !r.ok).length, text).toBe(0);
    expect(results).toHaveLength(total);
  });
});

describe('the runner (npm run docs:check)', () => {
  it('fails on a broken example, naming the file and the failing line, with the block output; the blocks before it ran and shared their directory', async () => {
    const file = page(
      'broken.md',
      [
        '# A page',
        '',
        '<!-- docs:run -->',
        '```sh',
        'curl -sf -H "Authorization: Bearer $MARINER_API_KEY" "$MARINER_URL/v1/models" > models.json',
        '```',
        '',
        '<!-- docs:run -->',
        '```sh',
        'grep -q mariner-demo models.json',
        'echo "about to fail"',
        'curl -sf "$MARINER_URL/v1/no-such-route" -H "Authorization: Bearer $MARINER_API_KEY"',
        'echo "never $((1 + 1))"',
        '```',
        '',
        '<!-- docs:run -->',
        '```sh',
        'echo "not run: the page stopped at its failure"',
        '```',
        '',
      ].join('\n'),
    );
    const { code, stdout } = await runCli(['--url', server.url, file]);
    expect(code).toBe(1);
    expect(stdout).toContain(`FAIL ${file}:10: exited with 22: the command at ${file}:12 failed (status 22)`);
    expect(stdout).toContain('about to fail');
    expect(stdout).not.toContain('never 2');
    expect(stdout).toContain('1 of 3 blocks passed on 1 pages; 1 failed, 1 not run');
  });

  it('fails when stdout does not match docs:expect, and passes when it does', async () => {
    const file = page(
      'expect.md',
      [
        '<!-- docs:run -->',
        '<!-- docs:expect "object":"list" -->',
        '```sh',
        'curl -sf -H "Authorization: Bearer $MARINER_API_KEY" "$MARINER_URL/v1/models"',
        '```',
        '',
        '<!-- docs:run -->',
        '<!-- docs:expect ^mariner-demo-nonexistent$ -->',
        '```bash',
        'echo mariner-demo',
        '```',
      ].join('\n'),
    );
    const { code, stdout } = await runCli(['--url', server.url, file]);
    expect(code).toBe(1);
    expect(stdout).toContain(`FAIL ${file}:10: stdout does not match docs:expect /^mariner-demo-nonexistent$/`);
    expect(stdout).toContain('1 of 2 blocks passed');
  });

  it('a marker without a shell block after it is an error in the page, not a skipped example', () => {
    expect(() => extractBlocks('x.md', '<!-- docs:run -->\n```js\nconsole.log(1)\n```\n')).toThrow(DocsSyntaxError);
    expect(() => extractBlocks('x.md', 'text\n\n<!-- docs:run -->\nplain text\n')).toThrow(/x\.md:3: docs:run must be followed/);
    // A marker shown inside a code block (as in the docs' own explanation) is not one.
    expect(extractBlocks('x.md', '````md\n<!-- docs:run -->\n```sh\nfalse\n```\n````\n')).toEqual([]);
  });
});
