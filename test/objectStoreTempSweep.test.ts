import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * Issue 24 item 10: after a `kill -9` during an upload, the partial upload stayed on disk
 * (`objects/.tmp/*.part`, 105 MB) until it was an hour old. The filesystem object store now removes, when
 * a process opens it, the temp files of processes that are gone; an upload in progress in another live
 * process sharing the folder is left alone. Real processes: one killed mid-put, one restarted after it.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
let dir: string;

/** Runs a module snippet in a new Node process (TypeScript through tsx) with the store's folder as OBJECTS. */
function node(code: string) {
  return spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: ROOT,
    env: { ...process.env, OBJECTS: dir },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'mariner-sweep-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('filesystem object store: temp files of a killed upload', () => {
  it('are removed when the store is opened again; a live process put is kept', async () => {
    // A process uploading (a stream that never ends), killed with SIGKILL once it has written.
    const uploader = node(`
      import { PassThrough } from 'node:stream';
      import { createObjectStore } from './lib/objectStore/index.ts';
      const store = await createObjectStore({ driver: 'filesystem', dir: process.env.OBJECTS });
      const body = new PassThrough();
      void store.put('files/big.bin', body).catch(() => {});
      body.write(Buffer.alloc(1024 * 1024, 1));
      setTimeout(() => process.stdout.write('writing\\n'), 200);
      setInterval(() => {}, 1000);
    `);
    await new Promise<void>((resolve, reject) => {
      uploader.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('writing') && resolve());
      uploader.once('exit', (code) => reject(new Error(`the uploader exited early (${code})`)));
    });
    const killed = new Promise((resolve) => uploader.once('exit', resolve));
    uploader.kill('SIGKILL');
    await killed;
    const temps = path.join(dir, '.tmp');
    const left = await readdir(temps);
    expect(left).toHaveLength(1);
    expect((await stat(path.join(temps, left[0]!))).size).toBe(1024 * 1024);

    // An upload of a process that is alive (this test's) in the same folder.
    const live = `${process.pid}-${randomUUID()}.part`;
    await writeFile(path.join(temps, live), 'in progress');

    // The platform starts again: its store removes the killed upload's part, not the live one.
    const restarted = node(`
      import { createObjectStore } from './lib/objectStore/index.ts';
      const store = await createObjectStore({ driver: 'filesystem', dir: process.env.OBJECTS });
      await store.close();
    `);
    expect(await new Promise((resolve) => restarted.once('exit', resolve))).toBe(0);
    expect(await readdir(temps)).toEqual([live]);
  }, 60_000);
});
