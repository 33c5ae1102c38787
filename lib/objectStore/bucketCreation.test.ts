import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LogCapture } from '../../test/support/logCapture.js';
import { loadConfig } from '../config.js';
import { createLogger } from '../logging.js';
import { createObjectStore } from './index.js';
import { startTestS3Server, type TestS3Server } from './testS3Server.js';

/**
 * Opening the S3 store when its bucket is missing (issue 23): created at start when MARINER_S3_CREATE_BUCKET
 * is auto (the default) and the credentials may, with a log line saying so; otherwise opening fails with
 * the bucket's name. Against s3rver, the S3 protocol server the driver's tests use.
 */
describe('the S3 object store creates its missing bucket at start, or fails naming it', () => {
  let s3: TestS3Server;
  let refusing: TestS3Server;

  beforeAll(async () => {
    s3 = await startTestS3Server();
    refusing = await startTestS3Server({ refuseBucketCreation: true });
  });
  const captureLogs = () => {
    const capture = new LogCapture();
    return { logger: createLogger('info', 'test', capture), lines: () => capture.lines.map((line) => ({ ...line, msg: line.msg ?? '' })) };
  };
  afterAll(async () => {
    await s3?.close();
    await refusing?.close();
  });

  it('defaults to auto: MARINER_S3_CREATE_BUCKET is auto or never', () => {
    const env = { MARINER_OBJECT_STORE: 's3', MARINER_S3_BUCKET: 'models' };
    expect(loadConfig(env).objectStore).toMatchObject({ driver: 's3', createBucket: 'auto' });
    expect(loadConfig({ ...env, MARINER_S3_CREATE_BUCKET: 'never' }).objectStore).toMatchObject({ createBucket: 'never' });
    expect(() => loadConfig({ ...env, MARINER_S3_CREATE_BUCKET: 'yes' })).toThrow(/MARINER_S3_CREATE_BUCKET must be auto or never/);
  });

  it('creates a missing bucket, logs it once, and stores objects in it; a second start finds it', async () => {
    const logs = captureLogs();
    const config = { ...s3.config, bucket: 'made-at-start' };
    const store = await createObjectStore(config, { logger: logs.logger });
    expect(logs.lines().filter((line) => /created the bucket "made-at-start"/.test(line.msg))).toHaveLength(1);
    await store.put('files/a.txt', Readable.from([Buffer.from('hello')]));
    expect((await buffer(await store.get('files/a.txt'))).toString()).toBe('hello');
    await store.close();

    const again = captureLogs();
    const reopened = await createObjectStore(config, { logger: again.logger });
    expect(again.lines().some((line) => /created the bucket/.test(line.msg))).toBe(false);
    expect((await buffer(await reopened.get('files/a.txt'))).toString()).toBe('hello');
    await reopened.close();
  });

  it('opens an existing bucket without creating anything', async () => {
    const logs = captureLogs();
    const store = await createObjectStore(s3.config, { logger: logs.logger });
    expect(logs.lines().some((line) => /created the bucket/.test(line.msg))).toBe(false);
    await store.close();
  });

  it('with MARINER_S3_CREATE_BUCKET=never, a missing bucket fails the start naming it, and nothing is created', async () => {
    await expect(createObjectStore({ ...s3.config, bucket: 'never-made', createBucket: 'never' })).rejects.toThrow(
      /bucket "never-made" at http:\/\/127\.0\.0\.1:\d+ does not exist \(MARINER_S3_CREATE_BUCKET=never\)/,
    );
    // Still missing: a later start with auto creates it.
    const logs = captureLogs();
    const store = await createObjectStore({ ...s3.config, bucket: 'never-made' }, { logger: logs.logger });
    expect(logs.lines().some((line) => /created the bucket "never-made"/.test(line.msg))).toBe(true);
    await store.close();
  });

  it('when the credentials may not create buckets (AccessDenied), the start fails naming the bucket and the missing right', async () => {
    await expect(createObjectStore({ ...refusing.config, bucket: 'not-allowed' })).rejects.toThrow(
      /bucket "not-allowed" at http:\/\/127\.0\.0\.1:\d+ does not exist and could not be created \(AccessDenied: .*\): create it, or give these credentials s3:CreateBucket/,
    );
    // The bucket that exists on that server still opens.
    const store = await createObjectStore(refusing.config);
    await store.close();
  });
});
