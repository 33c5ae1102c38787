/**
 * The embedded data dir holds the generated secrets, the PGlite database and (by default) every
 * tenant's files: no other local user may read any of it. PGlite writes its files 0666 whatever the
 * umask, so what protects them is the folders: the data dir and the database's 0700; the object
 * store's own folders 0700 and objects 0600 (it may live outside the data dir).
 */
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPlatform, type TestPlatform } from './support/platform.js';

const mode = (file: string) => statSync(file).mode & 0o777;

/** Every file and folder under `dir`, with its mode. */
function modesUnder(dir: string): { path: string; mode: number; folder: boolean }[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).map((entry) => {
    const full = path.join(entry.parentPath, entry.name);
    return { path: path.relative(dir, full), mode: mode(full), folder: entry.isDirectory() };
  });
}

describe.skipIf(process.platform === 'win32')('the embedded data dir is private to the user running Mariner', () => {
  let root: string;
  let dataDir: string;
  let t: TestPlatform;

  beforeAll(async () => {
    root = mkdtempSync(path.join(tmpdir(), 'mariner-modes-'));
    chmodSync(root, 0o755);
    dataDir = path.join(root, 'data');
    // A data dir an earlier version made with default modes: its folders are tightened on start.
    mkdirSync(path.join(dataDir, 'pglite'), { recursive: true });
    chmodSync(dataDir, 0o755);
    chmodSync(path.join(dataDir, 'pglite'), 0o755);
    t = await startTestPlatform({
      embedded: true,
      config: { dataDir, objectStore: { driver: 'filesystem', dir: path.join(root, 'objects') } },
    });
  });
  afterAll(async () => {
    await t?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('the data dir and the embedded database are 0700, the generated secret 0600', () => {
    expect(mode(dataDir).toString(8)).toBe('700');
    expect(mode(path.join(dataDir, 'pglite')).toString(8)).toBe('700');
    expect(mode(path.join(dataDir, 'internal-token-secret')).toString(8)).toBe('600');
  });

  it("an uploaded file's bytes are 0600 in folders of 0700, even with the store outside the data dir", async () => {
    const client = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0 });
    const file = await client.files.create({ file: await toFile(Buffer.from('private notes'), 'notes.txt'), purpose: 'user_data' });
    const store = path.join(root, 'objects');
    const entries = modesUnder(store);
    expect(entries.some((entry) => entry.path.endsWith(file.id))).toBe(true);
    expect(mode(store).toString(8)).toBe('700');
    for (const entry of entries) expect(`${entry.path} ${entry.mode.toString(8)}`).toBe(`${entry.path} ${entry.folder ? '700' : '600'}`);
  });
});
