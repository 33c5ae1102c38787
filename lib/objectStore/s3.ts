import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  paginateListObjectsV2,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { Readable } from 'node:stream';
import type { ObjectStoreConfig } from '../config.js';
import type { Logger } from '../logging.js';
import { InvalidObjectKeyError, ObjectNotFoundError } from './errors.js';
import { MAX_OBJECT_KEY_BYTES, validateListPrefix, validateObjectKey } from './keys.js';
import { meterBody, putFailure } from './meteredBody.js';
import type { ObjectInfo, ObjectStore, PutObjectOptions } from './objectStore.js';
import { hasUriScheme, keyOrNull } from './uris.js';

export type S3ObjectStoreConfig = Extract<ObjectStoreConfig, { driver: 's3' }>;

/** Multipart part size: 8 MiB parts allow objects up to 78 GiB within S3's 10,000-part limit. */
export const S3_PART_BYTES = 8 * 1024 * 1024;
/** Parts uploaded at once; a put holds at most about (queue size + 1) parts in memory. */
export const S3_QUEUE_SIZE = 2;

/**
 * Objects in one bucket under `config.prefix`. A put streams through lib-storage's Upload: one PutObject for
 * bodies under a part, else a multipart upload, which S3 shows only once CompleteMultipartUpload succeeds,
 * so a failed put leaves no object; its parts are removed with AbortMultipartUpload.
 */
export function createS3ObjectStore(config: S3ObjectStoreConfig, logger?: Logger): ObjectStore {
  return new S3ObjectStore(s3Client(config), config.bucket, config.prefix, logger);
}

/**
 * The S3 store, once its bucket is known to be there: a missing bucket is created when
 * `config.createBucket` is auto (the default, MARINER_S3_CREATE_BUCKET) and the credentials may
 * (s3:CreateBucket), with a log line saying so; otherwise opening fails with an error naming the bucket.
 * A bucket that cannot be checked (no s3:ListBucket, endpoint unreachable) is left to the first operation.
 */
export async function openS3ObjectStore(config: S3ObjectStoreConfig, logger?: Logger): Promise<ObjectStore> {
  const client = s3Client(config);
  try {
    await ensureBucket(client, config, logger);
  } catch (error) {
    client.destroy();
    throw error;
  }
  return new S3ObjectStore(client, config.bucket, config.prefix, logger);
}

/** The S3 error's HTTP status (HeadBucket's errors have no body, so only the status tells). */
const statusOf = (error: unknown) => (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;

async function ensureBucket(client: S3Client, config: S3ObjectStoreConfig, logger: Logger | undefined): Promise<void> {
  const Bucket = config.bucket;
  const where = config.endpoint ? ` at ${config.endpoint}` : '';
  try {
    await client.send(new HeadBucketCommand({ Bucket }));
    return;
  } catch (error) {
    const name = (error as Error).name;
    if (statusOf(error) !== 404 && name !== 'NotFound' && name !== 'NoSuchBucket') {
      // 403 (no s3:ListBucket, which object access does not need), or the endpoint not answering yet.
      logger?.warn(
        { bucket: Bucket, err: (error as Error).message || name },
        'object store: could not check that the bucket exists; the first operation will tell',
      );
      return;
    }
  }
  if ((config.createBucket ?? 'auto') === 'never') {
    throw new Error(
      `object store: the bucket "${Bucket}"${where} does not exist (MARINER_S3_CREATE_BUCKET=never): create it, or set MARINER_S3_CREATE_BUCKET=auto`,
    );
  }
  try {
    // Outside us-east-1, AWS wants the region as the bucket's location constraint.
    const location =
      config.region && config.region !== 'us-east-1' && !config.endpoint ? { CreateBucketConfiguration: { LocationConstraint: config.region as never } } : {};
    await client.send(new CreateBucketCommand({ Bucket, ...location }));
  } catch (error) {
    const name = (error as Error).name;
    // Another component created it first (they start together).
    if (name === 'BucketAlreadyOwnedByYou') return;
    throw new Error(
      `object store: the bucket "${Bucket}"${where} does not exist and could not be created (${name}: ${(error as Error).message}): ` +
        'create it, or give these credentials s3:CreateBucket',
    );
  }
  const line = `object store: created the bucket "${Bucket}"${where}, which did not exist (MARINER_S3_CREATE_BUCKET=auto)`;
  if (logger) logger.info({ bucket: Bucket }, line);
  else process.stderr.write(`${line}\n`);
}

function s3Client(config: S3ObjectStoreConfig): S3Client {
  return new S3Client({
    region: config.region,
    forcePathStyle: config.forcePathStyle,
    ...(config.endpoint ? { endpoint: config.endpoint } : {}),
    // Without explicit keys the SDK's default chain applies (env, shared config, IRSA, instance role).
    ...(config.accessKeyId && config.secretAccessKey ? { credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey } } : {}),
  });
}

class S3ObjectStore implements ObjectStore {
  readonly kind = 's3' as const;

  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
    private readonly prefix: string,
    private readonly logger: Logger | undefined,
  ) {}

  async presignedUrl(key: string, method: 'GET' | 'PUT', expiresInSeconds: number): Promise<string> {
    const params = { Bucket: this.bucket, Key: this.objectKey(key) };
    const command = method === 'GET' ? new GetObjectCommand(params) : new PutObjectCommand(params);
    // SigV4 presigned URLs live at most 7 days.
    return getSignedUrl(this.client, command, { expiresIn: Math.min(Math.max(1, Math.floor(expiresInSeconds)), 7 * 24 * 3600) });
  }

  async put(key: string, body: NodeJS.ReadableStream | AsyncIterable<Uint8Array>, options: PutObjectOptions = {}): Promise<{ bytes: number }> {
    const Key = this.objectKey(key);
    options.signal?.throwIfAborted();
    const metered = meterBody(body, options);
    let upload: Upload | undefined;
    // Abort and overrun destroy `metered` rather than calling upload.abort(): in lib-storage 3.1175
    // abort() makes done() reject at once while part uploads still run and AbortMultipartUpload is only
    // sent later, in the background. A failed read instead makes done() reject after every part request
    // has settled and after lib-storage's own AbortMultipartUpload, so nothing is pending when put() fails.
    try {
      upload = new Upload({
        client: this.client,
        params: { Bucket: this.bucket, Key, Body: metered, ...(options.contentType ? { ContentType: options.contentType } : {}) },
        partSize: S3_PART_BYTES,
        queueSize: S3_QUEUE_SIZE,
        leavePartsOnError: false,
      });
      await upload.done();
      return { bytes: metered.bytes };
    } catch (error) {
      const failure = putFailure(metered, error, options.signal);
      metered.destroy();
      // Again, by upload id: lib-storage's abort may have failed, and an absent upload costs one 404.
      if (upload?.uploadId) await this.abortMultipartUpload(Key, upload.uploadId);
      throw failure;
    }
  }

  async get(key: string): Promise<Readable> {
    try {
      const { Body } = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
      if (!(Body instanceof Readable)) throw new Error(`GetObject returned no stream for ${key}`);
      return Body;
    } catch (error) {
      if (isNotFound(error)) throw new ObjectNotFoundError(key);
      throw error;
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    try {
      const { ContentLength } = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
      return { key, bytes: ContentLength ?? 0 };
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
  }

  async delete(key: string): Promise<void> {
    // DeleteObject succeeds for an absent key (S3 API: DeleteObject), which makes this idempotent.
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    validateListPrefix(prefix);
    const base = this.prefix === '' ? '' : `${this.prefix}/`;
    const pages = paginateListObjectsV2({ client: this.client }, { Bucket: this.bucket, Prefix: base + prefix });
    for await (const page of pages) {
      for (const object of page.Contents ?? []) {
        const key = object.Key?.slice(base.length);
        // Objects other tools put there with keys this store cannot address (`folder/` markers) are skipped.
        if (key !== undefined && keyOrNull(key) !== null) yield { key, bytes: object.Size ?? 0 };
      }
    }
  }

  uri(key: string): string {
    return `s3://${this.bucket}/${this.objectKey(key)}`;
  }

  keyFromUri(uri: string): string | null {
    if (!hasUriScheme(uri)) return keyOrNull(uri);
    const match = /^s3:\/\/([^/]+)\/(.*)$/is.exec(uri);
    if (!match || match[1] !== this.bucket) return null;
    const objectKey = match[2]!;
    if (this.prefix === '') return keyOrNull(objectKey);
    return objectKey.startsWith(`${this.prefix}/`) ? keyOrNull(objectKey.slice(this.prefix.length + 1)) : null;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  private objectKey(key: string): string {
    validateObjectKey(key);
    const objectKey = this.prefix === '' ? key : `${this.prefix}/${key}`;
    if (Buffer.byteLength(objectKey) > MAX_OBJECT_KEY_BYTES) {
      throw new InvalidObjectKeyError(key, `longer than ${MAX_OBJECT_KEY_BYTES} bytes with the prefix ${this.prefix}/`);
    }
    return objectKey;
  }

  /** Removes a failed upload's parts; lib-storage normally did already, so an absent upload is success. */
  private async abortMultipartUpload(Key: string, UploadId: string): Promise<void> {
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId }));
    } catch (error) {
      if ((error as Error).name === 'NoSuchUpload') return;
      // The put still fails with its own error; a bucket lifecycle rule (AbortIncompleteMultipartUpload)
      // removes parts left by a failure like this one.
      this.logger?.warn({ err: error, key: Key, uploadId: UploadId }, 'object store: could not abort a multipart upload');
    }
  }
}

/** NoSuchKey (GetObject) or NotFound (HeadObject has no body, so only the 404 status). */
function isNotFound(error: unknown): boolean {
  const name = (error as Error).name;
  return name === 'NoSuchKey' || name === 'NotFound';
}
