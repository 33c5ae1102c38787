import { ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createObjectStore,
  InvalidObjectKeyError,
  ObjectNotFoundError,
  ObjectTooLargeError,
  validateObjectKey,
  type ObjectInfo,
  type ObjectStore,
} from './index.js';
import { S3_PART_BYTES } from './s3.js';
import { startTestS3Server } from './testS3Server.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 64 * KiB;

/** One driver under test: its store, what a failed put could leave behind, and addresses it must refuse. */
interface DriverUnderTest {
  store: ObjectStore;
  /** Temp files (filesystem) or multipart uploads still pending (S3, via ListMultipartUploads). */
  leftovers(): Promise<string[]>;
  foreignUris: string[];
  close(): Promise<void>;
}

const drivers: Array<{ name: string; start(): Promise<DriverUnderTest> }> = [
  {
    name: 'filesystem',
    async start() {
      const dir = await mkdtemp(path.join(tmpdir(), 'mariner-objects-'));
      const store = await createObjectStore({ driver: 'filesystem', dir });
      return {
        store,
        leftovers: () => readdir(path.join(dir, '.tmp')),
        foreignUris: [
          'file:///etc/passwd',
          `file://${dir}/../outside`,
          `file://${dir}/%2e%2e/outside`,
          `file://${dir}`,
          's3://mariner-test/mariner/files/x',
          'https://example.com/files/x',
        ],
        async close() {
          await store.close();
          await rm(dir, { recursive: true, force: true });
        },
      };
    },
  },
  {
    name: 's3',
    async start() {
      const server = await startTestS3Server({ bucket: 'mariner-test', prefix: 'mariner' });
      const store = await createObjectStore(server.config);
      const admin = new S3Client({
        region: server.config.region,
        endpoint: server.config.endpoint!,
        forcePathStyle: true,
        credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      });
      return {
        store,
        async leftovers() {
          const { Uploads = [] } = await admin.send(new ListMultipartUploadsCommand({ Bucket: 'mariner-test' }));
          return Uploads.map((upload) => `${upload.Key} ${upload.UploadId}`);
        },
        foreignUris: [
          's3://other-bucket/mariner/files/x',
          's3://mariner-test/elsewhere/files/x',
          's3://mariner-test/marinerfiles/x',
          's3://mariner-test/mariner/../files/x',
          's3://mariner-test/mariner/files/../../x',
          's3://mariner-test',
          'file:///etc/passwd',
          'https://mariner-test.s3.amazonaws.com/mariner/files/x',
        ],
        async close() {
          admin.destroy();
          await store.close();
          await server.close();
        },
      };
    },
  },
];

/**
 * A generated body of `total` bytes in 64 KiB chunks, never held whole: each chunk carries its index, so
 * reordered or dropped parts change the hash. It records how much was read, and can fail or abort midway.
 */
function generatedBody(total: number, { failAfter, onProduced }: { failAfter?: number; onProduced?: (produced: number) => void } = {}) {
  const pattern = randomBytes(CHUNK);
  const hash = createHash('sha256');
  const state = { produced: 0, finished: false, sha256: '' };
  async function* chunks(): AsyncGenerator<Buffer> {
    for (let index = 0; state.produced < total; index++) {
      if (failAfter !== undefined && state.produced >= failAfter) throw new Error('source failed midway');
      const chunk = Buffer.from(pattern.subarray(0, Math.min(CHUNK, total - state.produced)));
      chunk.writeUInt32BE(index % 2 ** 32, 0);
      state.produced += chunk.length;
      hash.update(chunk);
      onProduced?.(state.produced);
      yield chunk;
    }
    state.finished = true;
    state.sha256 = hash.digest('hex');
  }
  return { stream: Readable.from(chunks(), { objectMode: false, highWaterMark: CHUNK }), state };
}

async function sha256Of(stream: Readable): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

async function collect(objects: AsyncIterable<ObjectInfo>): Promise<ObjectInfo[]> {
  const all: ObjectInfo[] = [];
  for await (const object of objects) all.push(object);
  return all;
}

/** Sorted as S3 sorts keys: by their UTF-8 bytes. */
function inKeyOrder(objects: ObjectInfo[]): ObjectInfo[] {
  return [...objects].sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
}

const text = (value: string) => Readable.from([Buffer.from(value)]);

describe.each(drivers)('object store: $name driver', (driver) => {
  let env: DriverUnderTest;
  let store: ObjectStore;

  beforeAll(async () => {
    env = await driver.start();
    store = env.store;
  });
  afterAll(async () => {
    await env?.close();
  });

  async function expectNothingLeft(key: string, prefix: string): Promise<void> {
    expect(await store.head(key)).toBeNull();
    expect(await collect(store.list(prefix))).toEqual([]);
    await expect(store.get(key)).rejects.toBeInstanceOf(ObjectNotFoundError);
    expect(await env.leftovers()).toEqual([]);
  }

  it('returns the same bytes it stored, small, empty and multipart-sized', async () => {
    expect(store.kind).toBe(driver.name);
    expect(await store.put('roundtrip/small.txt', text('hello, mariner'), { contentType: 'text/plain' })).toEqual({
      bytes: 14,
    });
    expect((await buffer(await store.get('roundtrip/small.txt'))).toString()).toBe('hello, mariner');

    expect(await store.put('roundtrip/empty', Readable.from([]))).toEqual({ bytes: 0 });
    expect((await buffer(await store.get('roundtrip/empty'))).length).toBe(0);

    // An async iterable (not a stream) is accepted too.
    expect(
      await store.put(
        'roundtrip/iterable',
        (async function* () {
          yield new Uint8Array([1, 2, 3]);
        })(),
      ),
    ).toEqual({
      bytes: 3,
    });

    const size = 20 * MiB + 12_345; // two full 8 MiB parts and a partial one on S3
    expect(size).toBeGreaterThan(2 * S3_PART_BYTES);
    const body = generatedBody(size);
    expect(await store.put('roundtrip/large.bin', body.stream)).toEqual({ bytes: size });
    expect(body.state.finished).toBe(true);
    expect(await sha256Of(await store.get('roundtrip/large.bin'))).toEqual({ sha256: body.state.sha256, bytes: size });
    expect(await store.head('roundtrip/large.bin')).toEqual({ key: 'roundtrip/large.bin', bytes: size });
    expect(await env.leftovers()).toEqual([]);
  });

  it('heads, lists in key order by prefix, and deletes idempotently', async () => {
    for (const [key, value] of [
      ['catalog/b/1', 'b1'],
      ['catalog/a/2', 'a2-two'],
      ['catalog/a/1', 'a1'],
      ['catalog/a-c', 'dash'], // '-' sorts before '/', so before everything under catalog/a/
      ['catalog/é', 'accent'],
      ['catalogue/x', 'x'],
    ] as const) {
      await store.put(key, text(value));
    }
    expect(await store.head('catalog/a/2')).toEqual({ key: 'catalog/a/2', bytes: 6 });
    expect(await store.head('catalog/missing')).toBeNull();
    expect(await store.head('catalog/a')).toBeNull(); // a "folder" is not an object

    const listed = await collect(store.list('catalog/'));
    expect(inKeyOrder(listed)).toEqual([
      { key: 'catalog/a-c', bytes: 4 },
      { key: 'catalog/a/1', bytes: 2 },
      { key: 'catalog/a/2', bytes: 6 },
      { key: 'catalog/b/1', bytes: 2 },
      { key: 'catalog/é', bytes: 6 },
    ]);
    // S3 lists in UTF-8 byte order and so does the filesystem driver; s3rver lists in its folder-walk order
    // (catalog/a/... before catalog/a-c), so only the filesystem's order is checked here.
    if (driver.name === 'filesystem') expect(listed).toEqual(inKeyOrder(listed));
    expect(inKeyOrder(await collect(store.list('catalog/a'))).map((o) => o.key)).toEqual(['catalog/a-c', 'catalog/a/1', 'catalog/a/2']);
    expect((await collect(store.list('catalog'))).map((o) => o.key)).toContain('catalogue/x');
    expect(await collect(store.list('catalog/zzz'))).toEqual([]);
    expect(await collect(store.list('nothing-here/'))).toEqual([]);

    await store.delete('catalog/a/1');
    await store.delete('catalog/a/1');
    await store.delete('catalog/never-existed');
    expect(await store.head('catalog/a/1')).toBeNull();
    await store.delete('catalog/a/2');
    expect(inKeyOrder(await collect(store.list('catalog/'))).map((o) => o.key)).toEqual(['catalog/a-c', 'catalog/b/1', 'catalog/é']);
    // A key under a since-emptied folder can be written again.
    await store.put('catalog/a/3', text('3'));
    expect(await store.head('catalog/a/3')).toEqual({ key: 'catalog/a/3', bytes: 1 });
  });

  it('fails with ObjectNotFoundError for a missing object', async () => {
    await expect(store.get('missing/object')).rejects.toBeInstanceOf(ObjectNotFoundError);
    await store.put('missing/folder/inner', text('x'));
    await expect(store.get('missing/folder')).rejects.toMatchObject({ name: 'ObjectNotFoundError', key: 'missing/folder' });
  });

  it('replaces an object on overwrite', async () => {
    await store.put('overwrite/key', text('first version, longer'));
    await store.put('overwrite/key', text('second'));
    expect((await buffer(await store.get('overwrite/key'))).toString()).toBe('second');
    expect(await collect(store.list('overwrite/'))).toEqual([{ key: 'overwrite/key', bytes: 6 }]);
  });

  it('leaves nothing behind when the source fails midway, and keeps the previous version', async () => {
    const failing = generatedBody(64 * MiB, { failAfter: S3_PART_BYTES + 2 * MiB }); // after a part was sent
    await expect(store.put('broken/key', failing.stream)).rejects.toThrow('source failed midway');
    await expectNothingLeft('broken/key', 'broken/');

    await store.put('broken/kept', text('previous'));
    await expect(store.put('broken/kept', generatedBody(64 * MiB, { failAfter: 3 * MiB }).stream)).rejects.toThrow('source failed midway');
    expect((await buffer(await store.get('broken/kept'))).toString()).toBe('previous');
    expect(await env.leftovers()).toEqual([]);
  });

  it('stops reading at maxBytes with ObjectTooLargeError and leaves nothing behind', async () => {
    const huge = 1024 * 1024 * MiB; // 1 TiB, generated lazily: reading it to the end would time the test out
    const small = generatedBody(huge);
    const error = await store.put('limits/small', small.stream, { maxBytes: 1 * MiB }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ObjectTooLargeError);
    expect((error as ObjectTooLargeError).limit).toBe(MiB);
    expect(small.state.produced).toBeLessThan(2 * MiB);
    expect(small.stream.destroyed).toBe(true);
    await expectNothingLeft('limits/small', 'limits/');

    // Past two S3 parts: the multipart upload exists and must be aborted.
    const limit = 2 * S3_PART_BYTES + MiB;
    const large = generatedBody(huge);
    await expect(store.put('limits/large', large.stream, { maxBytes: limit })).rejects.toBeInstanceOf(ObjectTooLargeError);
    expect(large.state.produced).toBeLessThan(limit + 2 * MiB);
    await expectNothingLeft('limits/large', 'limits/');

    // Exactly at the limit is accepted.
    expect(await store.put('limits/exact', generatedBody(MiB).stream, { maxBytes: MiB })).toEqual({ bytes: MiB });
    await store.delete('limits/exact');
  });

  it('leaves nothing behind when aborted through the signal', async () => {
    const controller = new AbortController();
    const abortAt = S3_PART_BYTES + 2 * MiB;
    const body = generatedBody(64 * MiB, { onProduced: (produced) => produced >= abortAt && controller.abort() });
    const error = await store.put('aborted/key', body.stream, { signal: controller.signal }).catch((e: unknown) => e);
    expect(error).toBe(controller.signal.reason);
    expect((error as Error).name).toBe('AbortError');
    expect(body.state.produced).toBeLessThan(abortAt + 2 * MiB);
    await expectNothingLeft('aborted/key', 'aborted/');

    const untouched = generatedBody(MiB);
    await expect(store.put('aborted/before', untouched.stream, { signal: AbortSignal.abort() })).rejects.toMatchObject({
      name: 'AbortError',
    });
    expect(untouched.state.produced).toBe(0);
    await expectNothingLeft('aborted/before', 'aborted/');
  });

  it('round-trips its own addresses and refuses foreign ones or traversal', () => {
    for (const key of ['files/org-1/file-abc', 'models/a b/c+d%20e#f?.bin', 'é/ü']) {
      const uri = store.uri(key);
      expect(uri.startsWith(driver.name === 's3' ? 's3://mariner-test/mariner/' : 'file:///')).toBe(true);
      expect(store.keyFromUri(uri)).toBe(key);
      expect(store.keyFromUri(key)).toBe(key); // a relative key is an address in this store
    }
    for (const uri of [...env.foreignUris, '../x', 'a/../../x', '/etc/passwd', '', 'a\\b']) {
      expect(store.keyFromUri(uri), uri).toBeNull();
    }
  });

  it('refuses invalid keys', async () => {
    const invalid = ['', '/abs', '..', 'a/../b', './a', 'a//b', 'a/', 'a\\b', 'a\0b', 'a\nb', 'x'.repeat(1025), '.tmp/x'];
    for (const key of invalid) {
      await expect(store.put(key, text('x')), JSON.stringify(key)).rejects.toBeInstanceOf(InvalidObjectKeyError);
      await expect(store.get(key)).rejects.toBeInstanceOf(InvalidObjectKeyError);
      await expect(store.head(key)).rejects.toBeInstanceOf(InvalidObjectKeyError);
      await expect(store.delete(key)).rejects.toBeInstanceOf(InvalidObjectKeyError);
      expect(() => store.uri(key)).toThrow(InvalidObjectKeyError);
    }
    await expect(collect(store.list('../'))).rejects.toBeInstanceOf(InvalidObjectKeyError);
    await expect(collect(store.list('/abs'))).rejects.toBeInstanceOf(InvalidObjectKeyError);
    expect(await env.leftovers()).toEqual([]);
  });
});

describe('validateObjectKey', () => {
  it('accepts keys up to 1024 UTF-8 bytes and refuses longer ones', () => {
    expect(validateObjectKey('a'.repeat(1024))).toBe('a'.repeat(1024));
    expect(() => validateObjectKey('é'.repeat(513))).toThrow(InvalidObjectKeyError); // 1026 bytes
    expect(() => validateObjectKey('bad\uD800surrogate')).toThrow(InvalidObjectKeyError);
    expect(validateObjectKey('files/.hidden/file.tmp')).toBe('files/.hidden/file.tmp');
  });
});

describe('filesystem driver', () => {
  it('removes temp files left by crashed puts over an hour old when it starts', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'mariner-objects-'));
    try {
      await mkdir(path.join(dir, '.tmp'));
      const stale = path.join(dir, '.tmp', 'stale.part');
      const recent = path.join(dir, '.tmp', 'recent.part');
      await writeFile(stale, 'half an upload');
      await writeFile(recent, 'an upload in progress');
      const twoHoursAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
      await utimes(stale, twoHoursAgo, twoHoursAgo);

      const store = await createObjectStore({ driver: 'filesystem', dir });
      expect(await readdir(path.join(dir, '.tmp'))).toEqual(['recent.part']);
      expect(await collect(store.list(''))).toEqual([]); // .tmp is never listed
      await store.put('kept', text('x'));
      expect((await stat(path.join(dir, 'kept'))).size).toBe(1);
      await store.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
