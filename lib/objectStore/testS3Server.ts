/**
 * A real S3-protocol server for tests: s3rver on 127.0.0.1 (ephemeral port, temp folder), plus the two
 * multipart operations s3rver 3.7.1 lacks, so that tests can check that a failed put leaves no upload
 * behind with the same ListMultipartUploads request they would send to AWS:
 * - ListMultipartUploads (GET /<bucket>?uploads): s3rver answers NotImplemented;
 * - AbortMultipartUpload (DELETE /<bucket>/<key>?uploadId=): s3rver answers MethodNotAllowed.
 * Both are served from s3rver's own record of in-progress uploads (`<dir>/<bucket>/._S3rver_uploads/<id>/`).
 * Test-only: imports the s3rver devDependency; never import it from index.ts.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import S3rver from 's3rver';
import type { S3ObjectStoreConfig } from './s3.js';

export interface TestS3Server {
  /** An object store config for this server (bucket, prefix, loopback endpoint, path style, test keys). */
  config: S3ObjectStoreConfig;
  close(): Promise<void>;
}

/**
 * `refuseBucketCreation`: CreateBucket (PUT /<bucket>) is answered 403 AccessDenied, as AWS answers credentials
 * whose policy lacks s3:CreateBucket; everything else is served as before.
 */
export async function startTestS3Server({ bucket = 'mariner-test', prefix = 'mariner', refuseBucketCreation = false } = {}): Promise<TestS3Server> {
  const directory = await mkdtemp(path.join(tmpdir(), 'mariner-s3rver-'));
  // Bucket names need at least 3 characters (s3rver validates them like S3).
  const s3rver = new S3rver({ silent: true, directory, configureBuckets: [{ name: bucket }] });
  await s3rver.configureBuckets();
  const serveS3rver = s3rver.callback();
  const uploadsDir = path.join(directory, bucket, '._S3rver_uploads');

  const server = createServer((req, res) => {
    if (refuseBucketCreation && req.method === 'PUT' && /^\/[^/?]+\/?(\?.*)?$/.test(req.url ?? '') && !/[?&](uploadId|partNumber)=/.test(req.url ?? '')) {
      req.resume();
      sendXml(res, 403, errorXml('AccessDenied', 'Access Denied'));
      return;
    }
    multipartShim(req, res, bucket, uploadsDir).then(
      (handled) => handled || serveS3rver(req, res),
      (error: unknown) => sendXml(res, 500, errorXml('InternalError', String(error))),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;

  return {
    config: {
      driver: 's3',
      bucket,
      endpoint: `http://127.0.0.1:${port}`,
      region: 'us-east-1',
      forcePathStyle: true,
      accessKeyId: 'S3RVER', // s3rver's built-in test account
      secretAccessKey: 'S3RVER',
      prefix,
    },
    async close() {
      server.closeAllConnections(); // the SDK keeps sockets alive
      await new Promise<void>((resolve) => server.close(() => resolve()));
      s3rver.logger.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}

async function multipartShim(req: IncomingMessage, res: ServerResponse, bucket: string, uploadsDir: string): Promise<boolean> {
  const url = new URL(req.url ?? '/', 'http://s3');
  const [, urlBucket, ...keyParts] = url.pathname.split('/');
  if (urlBucket !== bucket) return false;
  const key = keyParts.map(decodeURIComponent).join('/');

  if (req.method === 'GET' && key === '' && url.searchParams.has('uploads')) {
    const ids = await readdir(uploadsDir).catch(() => [] as string[]);
    const uploads = await Promise.all(ids.map(async (id) => ({ id, key: await readFile(path.join(uploadsDir, id, 'key'), 'utf8') })));
    const items = uploads
      .filter((upload) => upload.key.startsWith(url.searchParams.get('prefix') ?? ''))
      .map((upload) => `<Upload><Key>${escapeXml(upload.key)}</Key><UploadId>${upload.id}</UploadId></Upload>`)
      .join('');
    sendXml(
      res,
      200,
      `<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>${bucket}</Bucket>` +
        `<MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>${items}</ListMultipartUploadsResult>`,
    );
    return true;
  }

  const uploadId = url.searchParams.get('uploadId');
  if (req.method === 'DELETE' && key !== '' && uploadId !== null) {
    const uploadDir = path.join(uploadsDir, path.basename(uploadId));
    const storedKey = await readFile(path.join(uploadDir, 'key'), 'utf8').catch(() => null);
    if (storedKey !== key) {
      sendXml(res, 404, errorXml('NoSuchUpload', 'The specified upload does not exist.'));
    } else {
      await rm(uploadDir, { recursive: true, force: true });
      res.writeHead(204).end();
    }
    return true;
  }
  return false;
}

function sendXml(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'application/xml' });
  res.end(`<?xml version="1.0" encoding="UTF-8"?>\n${body}`);
}

function errorXml(code: string, message: string): string {
  return `<Error><Code>${code}</Code><Message>${escapeXml(message)}</Message></Error>`;
}

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (ch) => `&#${ch.charCodeAt(0)};`);
}
