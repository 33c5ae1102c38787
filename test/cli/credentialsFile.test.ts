import { chmodSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliHome, runCli } from './cliProcess.js';

/**
 * Issue 19: the credentials file is the user's alone. A file others may read (group or world
 * permissions) is refused, as ssh refuses such a private key: every command says so and how to fix it,
 * with exit 1, and sends nothing; after `chmod 600` it is used again.
 */
describe.skipIf(process.platform === 'win32')('the credentials file', () => {
  it('is refused while group- or world-readable, and used again once it is owner-only', async () => {
    const { home, env } = cliHome();
    const file = path.join(home, '.config', 'mariner', 'config.yaml');
    mkdirSync(path.dirname(file), { recursive: true });
    // A context pointing nowhere reachable: a command that got past the check would fail to connect instead.
    writeFileSync(file, 'current-context: lab\ncontexts:\n  - name: lab\n    url: http://127.0.0.1:9\n    api-key: sk-secret-secret-secret\n');

    for (const mode of [0o644, 0o640, 0o604, 0o660]) {
      chmodSync(file, mode);
      const result = await runCli(env, ['context', 'list'], { cwd: home });
      expect(result.code, `mode ${mode.toString(8)}`).toBe(1);
      expect(result.stderr).toContain(`permissions 0${mode.toString(8)} for ${file} are too open`);
      expect(result.stderr).toContain(`chmod 600 ${file}`);
      expect(result.stdout).toBe('');
      const models = await runCli(env, ['models', 'list'], { cwd: home });
      expect(models.code).toBe(1);
      expect(models.stderr).toContain('are too open');
      expect(models.stderr).not.toContain('cannot reach');
    }

    chmodSync(file, 0o600);
    const listed = await runCli(env, ['context', 'list', '-o', 'json'], { cwd: home });
    expect(listed.code, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout).items).toEqual([expect.objectContaining({ name: 'lab', current: true })]);
    // A command that writes the file keeps it owner-only.
    const used = await runCli(env, ['context', 'use', 'lab'], { cwd: home });
    expect(used.code, used.stderr).toBe(0);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  }, 240_000);
});
