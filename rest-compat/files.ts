import type { IncomingMessage, ServerResponse } from 'node:http';
import busboy from 'busboy';
import { sendJson } from '../lib/http.js';
import { ObjectTooLargeError, type ObjectStore } from '../lib/objectStore/index.js';
import { unixSeconds } from '../lib/unixSeconds.js';
import { RestError } from './errors.js';
import type { GatewayClient } from './gatewayClient.js';
import { readJsonBody } from './json.js';
import { listParams, toList } from './lists.js';
import type { RouteContext } from './router.js';

const FILE_FIELDS = 'id bytes createdAt filename purpose status statusDetails';

interface GraphQLFile {
  id: string;
  bytes: number;
  createdAt: string;
  filename: string;
  purpose: string;
  status: 'UPLOADED' | 'PROCESSED' | 'ERROR';
  statusDetails: string | null;
}

/** OpenAI API: the File object. */
export function toOpenAIFile(file: GraphQLFile) {
  return {
    id: file.id,
    object: 'file' as const,
    bytes: file.bytes,
    created_at: unixSeconds(file.createdAt),
    filename: file.filename,
    purpose: file.purpose,
    status: file.status.toLowerCase(),
    ...(file.statusDetails ? { status_details: file.statusDetails } : {}),
  };
}

const BEGIN = `mutation BeginFileUpload($input: BeginFileUploadInput!) { beginFileUpload(input: $input) { id objectKey maxBytes } }`;
const COMPLETE = `mutation CompleteFileUpload($input: CompleteFileUploadInput!) { completeFileUpload(input: $input) { ${FILE_FIELDS} } }`;
const ABORT = `mutation AbortFileUpload($id: ID!) { abortFileUpload(id: $id) { deleted } }`;

export interface FileRoutesOptions {
  gateway: GatewayClient;
  objectStore: ObjectStore;
}

/** The OpenAI files routes: upload (multipart, streamed to the object store), list, retrieve, delete, content. */
export function fileRoutes({ gateway, objectStore }: FileRoutesOptions) {
  /**
   * POST /v1/files (OpenAI API: upload file). The bytes stream from the multipart body straight to the
   * object store (never through GraphQL): a mutation reserves the upload first (authenticating and
   * authorizing the caller), another completes it once the form has ended and `purpose` is known.
   */
  async function upload(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    if (!/^multipart\/form-data/i.test(req.headers['content-type'] ?? '')) {
      throw RestError.badRequest('Expected a multipart/form-data body with fields "file" and "purpose"', 'file');
    }
    const fields: Record<string, string> = {};
    let uploaded: Promise<{ id: string }> | undefined;
    let parser: busboy.Busboy;
    try {
      parser = busboy({ headers: req.headers, limits: { files: 1, fields: 20, fieldSize: 64 * 1024, parts: 25 } });
    } catch (error) {
      throw RestError.badRequest(`Malformed multipart body: ${(error as Error).message}`);
    }
    const finished = new Promise<void>((resolve, reject) => {
      parser.on('field', (name, value) => {
        fields[name] = value;
      });
      parser.on('file', (name, stream, info) => {
        // A broken body errors the part too; the parser's own error event reports it.
        stream.on('error', () => undefined);
        if (name !== 'file' || uploaded) {
          stream.resume();
          return;
        }
        uploaded = (async () => {
          const { beginFileUpload: reserved } = await gateway.request<{ beginFileUpload: { id: string; objectKey: string; maxBytes: number } }>(
            req,
            ctx.requestId,
            BEGIN,
            { input: { filename: info.filename || 'upload', purpose: fields['purpose'] ?? null } },
          );
          try {
            await objectStore.put(reserved.objectKey, stream, { maxBytes: reserved.maxBytes, contentType: info.mimeType });
          } catch (error) {
            await gateway.request(req, ctx.requestId, ABORT, { id: reserved.id }).catch(() => undefined);
            if (error instanceof ObjectTooLargeError) {
              throw new RestError(413, `File is larger than the limit of ${error.limit} bytes`, 'invalid_request_error', 'file', 'file_too_large');
            }
            throw error;
          }
          return reserved;
        })();
        // A failed reservation leaves the part unread: stop here, the response says why.
        uploaded.catch(() => reject(new Error('upload failed')));
      });
      parser.on('error', (error: Error) => reject(RestError.badRequest(`Malformed multipart body: ${error.message}`)));
      parser.on('close', () => resolve());
    });
    req.pipe(parser);
    try {
      await finished;
    } catch (error) {
      // A malformed body: let the upload clean up (abort), then say what was wrong with the body.
      if (error instanceof RestError) {
        await uploaded?.catch(() => undefined);
        throw error;
      }
      if (uploaded) await uploaded; // throws the upload's own error (auth, size, store)
      throw error;
    }
    if (!uploaded) throw RestError.badRequest('Missing the "file" field', 'file');
    const reserved = await uploaded;
    const purpose = fields['purpose'];
    if (!purpose) {
      await gateway.request(req, ctx.requestId, ABORT, { id: reserved.id }).catch(() => undefined);
      throw RestError.badRequest('Missing the "purpose" field', 'purpose');
    }
    const { completeFileUpload } = await gateway.request<{ completeFileUpload: GraphQLFile }>(req, ctx.requestId, COMPLETE, {
      input: { id: reserved.id, purpose },
    });
    sendJson(res, 200, toOpenAIFile(completeFileUpload), ctx.headers);
  }

  async function list(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const params = listParams(ctx.url, 'desc');
    const purpose = ctx.url.searchParams.get('purpose');
    const { files } = await gateway.request<{ files: { items: GraphQLFile[]; hasMore: boolean } }>(
      req,
      ctx.requestId,
      `query ListFiles($purpose: String, $after: String, $limit: Int, $order: SortOrder) { files(purpose: $purpose, after: $after, limit: $limit, order: $order) { items { ${FILE_FIELDS} } hasMore } }`,
      { ...params, purpose },
    );
    sendJson(res, 200, toList(files.items.map(toOpenAIFile), files.hasMore), ctx.headers);
  }

  async function fileOrThrow(req: IncomingMessage, ctx: RouteContext, id: string, extra = ''): Promise<GraphQLFile & { objectKey?: string }> {
    const { file } = await gateway.request<{ file: (GraphQLFile & { objectKey?: string }) | null }>(
      req,
      ctx.requestId,
      `query File($id: ID!) { file(id: $id) { ${FILE_FIELDS} ${extra} } }`,
      { id },
    );
    if (!file) throw RestError.notFound(`No such File object: ${id}`);
    return file;
  }

  async function retrieve(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    sendJson(res, 200, toOpenAIFile(await fileOrThrow(req, ctx, ctx.params['id']!)), ctx.headers);
  }

  async function remove(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const id = ctx.params['id']!;
    await gateway.request(req, ctx.requestId, `mutation DeleteFile($id: ID!) { deleteFile(id: $id) { deleted } }`, { id });
    sendJson(res, 200, { id, object: 'file', deleted: true }, ctx.headers);
  }

  /** GET /v1/files/{id}/content: the bytes, streamed from the object store. */
  async function content(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const file = await fileOrThrow(req, ctx, ctx.params['id']!, 'objectKey');
    const body = await objectStore.get(file.objectKey!);
    res.writeHead(200, {
      ...ctx.headers,
      'content-type': 'application/octet-stream',
      'content-length': String(file.bytes),
      'content-disposition': `attachment; filename*=UTF-8''${encodeURIComponent(file.filename)}`,
    });
    await new Promise<void>((resolve, reject) => {
      body.on('error', reject);
      res.on('close', () => resolve());
      (body as NodeJS.ReadableStream).pipe(res);
    });
  }

  /** POST /v1/files:createFromObjectPath (LLMariner): an object already in the store, as a File. */
  async function createFromObjectPath(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const body = await readJsonBody(req);
    const objectPath = body['object_path'];
    const purpose = body['purpose'];
    if (typeof objectPath !== 'string' || !objectPath) throw RestError.badRequest("Missing required parameter: 'object_path'", 'object_path');
    if (typeof purpose !== 'string' || !purpose) throw RestError.badRequest("Missing required parameter: 'purpose'", 'purpose');
    const { createFileFromObjectPath } = await gateway.request<{ createFileFromObjectPath: GraphQLFile }>(
      req,
      ctx.requestId,
      `mutation CreateFromObjectPath($input: CreateFileFromObjectPathInput!) { createFileFromObjectPath(input: $input) { ${FILE_FIELDS} } }`,
      { input: { objectPath, purpose } },
    );
    sendJson(res, 200, toOpenAIFile(createFileFromObjectPath), ctx.headers);
  }

  return [
    { method: 'POST', path: '/v1/files:createFromObjectPath', handler: createFromObjectPath },
    { method: 'POST', path: '/v1/files', handler: upload },
    { method: 'GET', path: '/v1/files', handler: list },
    { method: 'GET', path: '/v1/files/:id', handler: retrieve },
    { method: 'DELETE', path: '/v1/files/:id', handler: remove },
    { method: 'GET', path: '/v1/files/:id/content', handler: content },
  ] as const;
}
