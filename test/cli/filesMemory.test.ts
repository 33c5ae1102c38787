import { spawn } from 'node:child_process';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { cliHome, ROOT, TSX } from './cliProcess.js';

const SIZE = 600 << 20;
/** Node's own footprint is ~60 MB; a CLI that buffered the file would pass 600 MB. */
const PEAK_BOUND_KB = 200 << 10;

/** The process's peak resident set (VmHWM, kB) while it lives; undefined once it is gone. */
function peakRssKb(pid: number): number | undefined {
  try {
    const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Issue 19: `files create` streams a file of any size: a 600 MiB upload keeps the CLI's memory flat. */
describe.skipIf(process.platform !== 'linux')('mariner files create of a large file', () => {
  let t: TestPlatform;
  let home: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    t = await startTestPlatform({ config: { files: { maxFileBytes: 1 << 30 } } });
    ({ home, env } = cliHome());
  }, 60_000);
  afterAll(async () => {
    await t?.close();
  });

  it('uploads 600 MiB with the CLI process peaking under 200 MB resident', async () => {
    const file = path.join(home, 'big.bin');
    writeFileSync(file, '');
    truncateSync(file, SIZE); // sparse: no disk, the same bytes to read
    const child = spawn(
      process.execPath,
      ['--import', TSX, path.join(ROOT, 'bin/mariner.ts'), 'files', 'create', file, '--purpose', 'user_data', '-o', 'json'],
      {
        cwd: home,
        env: { ...env, MARINER_URL: t.url, MARINER_API_KEY: t.adminKey },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, peakRssKb(child.pid!) ?? 0)), 20);
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    clearInterval(sampler);
    expect(code, stderr).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ bytes: SIZE, filename: 'big.bin' });
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThan(PEAK_BOUND_KB);
    console.log(`files create of ${SIZE >> 20} MiB: CLI peak RSS ${(peak / 1024).toFixed(0)} MB`);
  }, 120_000);
});
