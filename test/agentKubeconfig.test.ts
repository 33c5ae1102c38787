import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPlatform, type TestPlatform } from './support/platform.js';

/**
 * Issue 24 item 2: the README's second-agent command on a machine without a kubeconfig. The agent with
 * the Kubernetes executor stops at once and says why, once, and what to do (`--executor local`),
 * instead of running on with client-node's "HTTP protocol is not allowed when skipTLSVerify is not set
 * or false" every 15 s.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
let t: TestPlatform;
let home: string;
let registrationKey: string;

beforeAll(async () => {
  t = await startTestPlatform();
  home = mkdtempSync(path.join(tmpdir(), 'mariner-no-kube-'));
  ({
    registerCluster: { registrationKey },
  } = await t.gqlOk('mutation { registerCluster(input: { name: "no-kubeconfig" }) { registrationKey } }'));
});
afterAll(async () => {
  await t?.close();
  rmSync(home, { recursive: true, force: true });
});

/** `mariner agent ...` with a HOME that has no ~/.kube, outside any pod. */
const agent = (args: string[], extraEnv: Record<string, string> = {}) =>
  new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const env = { PATH: process.env['PATH'] ?? '', HOME: home, MARINER_DATA_DIR: path.join(home, 'data'), ...extraEnv };
    execFile(
      process.execPath,
      ['--import', 'tsx', 'bin/mariner.ts', 'agent', '--control-plane', t.url, '--registration-key', registrationKey, ...args],
      { cwd: ROOT, env, timeout: 60_000 },
      (error, _stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, stderr }),
    );
  });

describe('mariner agent --executor kubernetes without a kubeconfig', () => {
  it('stops with exit code 1, saying once where it looked and to use --executor local', async () => {
    const { code, stderr } = await agent(['--executor', 'kubernetes']);
    expect(code).toBe(1);
    const expected = `no kubeconfig found at ${path.join(home, '.kube', 'config')}; run with --executor local for one machine`;
    expect(stderr).toContain(expected);
    expect(stderr.split(expected)).toHaveLength(2);
    expect(stderr).not.toContain('skipTLSVerify');
  }, 70_000);

  it('names the path given by --kubeconfig when it is not there', async () => {
    const missing = path.join(home, 'nowhere.yaml');
    const { code, stderr } = await agent(['--executor', 'kubernetes', '--kubeconfig', missing]);
    expect(code).toBe(1);
    expect(stderr).toContain(`no kubeconfig found at ${missing}; run with --executor local`);
  }, 70_000);
});
