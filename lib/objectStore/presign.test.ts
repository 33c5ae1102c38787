import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createS3ObjectStore } from './s3.js';
import { startTestS3Server, type TestS3Server } from './testS3Server.js';
import type { ObjectStore } from './objectStore.js';

describe('object store: presigned URLs (S3 driver, against an S3-protocol server)', () => {
  let server: TestS3Server;
  let store: ObjectStore;
  beforeAll(async () => {
    server = await startTestS3Server();
    store = createS3ObjectStore(server.config);
  });
  afterAll(async () => {
    await store?.close();
    await server?.close();
  });

  it('lets a holder without credentials upload with PUT and download with GET', async () => {
    const put = await store.presignedUrl!('jobs/out/adapter.bin', 'PUT', 600);
    expect(new URL(put).searchParams.get('X-Amz-Expires')).toBe('600');
    const uploaded = await fetch(put, { method: 'PUT', body: 'adapter bytes' });
    expect(uploaded.status).toBe(200);
    expect(await store.head('jobs/out/adapter.bin')).toEqual({ key: 'jobs/out/adapter.bin', bytes: 13 });

    await store.put('jobs/in/train.jsonl', Readable.from([Buffer.from('{"a":1}\n')]));
    const get = await store.presignedUrl!('jobs/in/train.jsonl', 'GET', 600);
    expect(await (await fetch(get)).text()).toBe('{"a":1}\n');
    // s3rver does not check presigned signatures: that a URL allows only its method, key and time
    // window is S3's part, not proven here.
  });
});
