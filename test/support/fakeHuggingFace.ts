import { createHash, randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A Hugging Face Hub test double on loopback, speaking the part of the Hub HTTP API the agent's model
 * loader uses, with the real hub's JSON shapes, statuses and error headers (huggingface_hub
 * `hf_raise_for_status` reads `X-Error-Code` / `X-Error-Message`):
 *
 * - `GET /api/models/{org}/{name}[?blobs=true]`: model info (`id`, `sha`, `gated`, `private`, `siblings`
 *   of `{ rfilename }`, with `size`, `blobId` and `lfs` when `blobs=true`). Public gated repos show
 *   their info to anyone, as on the hub.
 * - `GET /{org}/{name}/resolve/{revision}/{path}`: a file at a revision (`main` or the commit sha).
 *   Small text files are answered directly; LFS files (weights, or anything over 10 MiB) with a
 *   302 to a signed URL on a separate CDN server (another origin, as cdn-lfs.hf.co is), which needs
 *   no credentials.
 * - Errors: an unknown repository is 401 `RepoNotFound` without a token (the hub does not tell
 *   missing from private) and 404 `RepoNotFound` with one; a gated file is 401 `GatedRepo` without a
 *   token and 403 `GatedRepo` with a token that was not granted access; an unknown token is
 *   401 "Invalid credentials in Authorization header"; unknown revision/file: 404
 *   `RevisionNotFound` / `EntryNotFound`. Bodies are `{"error": "..."}`.
 */
export interface FakeHuggingFace {
  /** The hub's base URL (the loader's `huggingFace.endpoint`). */
  url: string;
  /** Every request either server received, in order (`authorization` as sent, if any). */
  requests: { server: 'hub' | 'cdn'; method: string; path: string; authorization: string | undefined }[];
  /**
   * Holds the next download of `file` of `repo` after `afterBytes` bytes of it were sent: `reached`
   * resolves once they are; the rest follows on `release()`, or `cut()` drops the connection there, as a
   * network failure would.
   */
  pauseDownload(repo: string, file: string, afterBytes: number): { reached: Promise<void>; release(): void; cut(): void };
  /** The next `count` requests to the hub (not the CDN) are answered `status` (e.g. 503), as an outage. */
  failNext(count: number, status?: number): void;
  close(): Promise<void>;
}

export interface FakeHuggingFaceOptions {
  /** Repositories that are gated: their files need a token that was granted access. */
  gated?: string[];
  /** Tokens the hub knows, granted access to every gated repository. */
  tokens?: string[];
  /** Tokens the hub knows whose account was not granted access to the gated repositories (403). */
  tokensWithoutAccess?: string[];
}

interface StoredFile {
  bytes: Buffer;
  sha256: string;
  gitOid: string;
  lfs: boolean;
}

interface Pause {
  afterBytes: number;
  reached: () => void;
  /** Resolves with what to do with the rest. */
  released: Promise<'send' | 'cut'>;
}

const LFS_EXTENSIONS = ['.safetensors', '.bin', '.gguf', '.pt', '.pth', '.onnx', '.h5', '.msgpack', '.ckpt'];
const LFS_THRESHOLD_BYTES = 10 * 1024 * 1024;
const GIT_OID = (bytes: Buffer) => createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');

export async function startFakeHuggingFace(repos: Record<string, Record<string, Buffer>>, options: FakeHuggingFaceOptions = {}): Promise<FakeHuggingFace> {
  const gated = new Set(options.gated ?? []);
  const granted = new Set(options.tokens ?? []);
  const tokens = new Set([...granted, ...(options.tokensWithoutAccess ?? [])]);
  const stored = new Map<string, { sha: string; lastModified: string; files: Map<string, StoredFile> }>();
  for (const [repo, files] of Object.entries(repos)) {
    const entries = new Map<string, StoredFile>();
    for (const [name, bytes] of Object.entries(files)) {
      entries.set(name, {
        bytes,
        sha256: createHash('sha256').update(bytes).digest('hex'),
        gitOid: GIT_OID(bytes),
        lfs: LFS_EXTENSIONS.some((extension) => name.endsWith(extension)) || bytes.length > LFS_THRESHOLD_BYTES,
      });
    }
    stored.set(repo, { sha: randomBytes(20).toString('hex'), lastModified: new Date().toISOString(), files: entries });
  }
  const requests: FakeHuggingFace['requests'] = [];
  const pauses = new Map<string, Pause>();
  // CDN links: signature → the file it serves (the hub signs them; the CDN checks nothing else).
  const signed = new Map<string, { repo: string; file: string }>();
  let failures = { count: 0, status: 503 };

  const cdn = http.createServer((req, res) => {
    requests.push({ server: 'cdn', method: req.method ?? 'GET', path: req.url ?? '/', authorization: req.headers.authorization });
    const url = new URL(req.url ?? '/', 'http://cdn');
    const target = signed.get(url.searchParams.get('X-Amz-Signature') ?? '');
    const file = target && stored.get(target.repo)?.files.get(target.file);
    if (!target || !file) {
      // What S3 behind the CDN says about a link that is not signed.
      res.writeHead(403, { 'content-type': 'application/xml' });
      return void res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>');
    }
    sendFile(req, res, target.repo, target.file, file, { etag: `"${file.sha256}"` });
  });

  const hub = http.createServer((req, res) => {
    requests.push({ server: 'hub', method: req.method ?? 'GET', path: req.url ?? '/', authorization: req.headers.authorization });
    if (failures.count > 0) {
      failures.count -= 1;
      return hubError(res, failures.status, null, failures.status === 404 ? 'Not Found' : 'Service temporarily unavailable');
    }
    const url = new URL(req.url ?? '/', 'http://hub');
    const token = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '')?.[1];
    if (token !== undefined && !tokens.has(token)) {
      return hubError(res, 401, null, 'Invalid credentials in Authorization header');
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return hubError(res, 405, null, 'Method not allowed');
    const segments = url.pathname.split('/').slice(1).map(decodeURIComponent);

    // GET /api/models/{org}/{name}
    if (segments[0] === 'api' && segments[1] === 'models' && segments.length === 4) {
      const repo = `${segments[2]}/${segments[3]}`;
      const model = stored.get(repo);
      if (!model) return repoNotFound(res, token);
      const blobs = url.searchParams.get('blobs') === 'true';
      const [author] = repo.split('/');
      return sendJson(res, 200, {
        _id: createHash('md5').update(repo).digest('hex').slice(0, 24),
        id: repo,
        modelId: repo,
        author,
        sha: model.sha,
        lastModified: model.lastModified,
        private: false,
        disabled: false,
        gated: gated.has(repo) ? 'manual' : false,
        downloads: 0,
        likes: 0,
        tags: [],
        library_name: 'transformers',
        createdAt: model.lastModified,
        siblings: [...model.files.entries()].map(([rfilename, file]) =>
          blobs
            ? {
                rfilename,
                blobId: file.gitOid,
                size: file.bytes.length,
                ...(file.lfs ? { lfs: { sha256: file.sha256, size: file.bytes.length, pointerSize: 134 } } : {}),
              }
            : { rfilename },
        ),
      });
    }

    // GET /{org}/{name}/resolve/{revision}/{path...}
    if (segments.length >= 5 && segments[2] === 'resolve') {
      const repo = `${segments[0]}/${segments[1]}`;
      const revision = segments[3]!;
      const path = segments.slice(4).join('/');
      const model = stored.get(repo);
      if (!model) return repoNotFound(res, token);
      if (gated.has(repo) && token === undefined) {
        return hubError(
          res,
          401,
          'GatedRepo',
          `Access to model ${repo} is restricted. You must have access to it and be authenticated to access it. Please log in.`,
        );
      }
      if (gated.has(repo) && !granted.has(token!)) {
        return hubError(
          res,
          403,
          'GatedRepo',
          `Access to model ${repo} is restricted and you are not in the authorized list. Visit https://huggingface.co/${repo} to ask for access.`,
        );
      }
      if (revision !== 'main' && revision !== model.sha) return hubError(res, 404, 'RevisionNotFound', 'Invalid rev id: ' + revision);
      const file = model.files.get(path);
      if (!file) return hubError(res, 404, 'EntryNotFound', `${path} does not exist on "${revision}"`);
      const headers = { 'x-repo-commit': model.sha, etag: `"${file.lfs ? file.sha256 : file.gitOid}"` };
      if (!file.lfs) return sendFile(req, res, repo, path, file, headers);
      const signature = randomBytes(16).toString('hex');
      signed.set(signature, { repo, file: path });
      const location = `${cdnUrl}/repos/${createHash('sha256').update(repo).digest('hex').slice(0, 16)}/${file.sha256}?X-Amz-Expires=3600&X-Amz-Signature=${signature}`;
      res.writeHead(302, { ...headers, location, 'x-linked-size': String(file.bytes.length), 'x-linked-etag': `"${file.sha256}"`, 'content-length': '0' });
      return void res.end();
    }
    hubError(res, 404, null, "Sorry, we can't find the page you are looking for.");
  });

  function sendFile(req: IncomingMessage, res: ServerResponse, repo: string, path: string, file: StoredFile, headers: Record<string, string>): void {
    res.writeHead(200, { ...headers, 'content-type': 'application/octet-stream', 'content-length': String(file.bytes.length) });
    if (req.method === 'HEAD') return void res.end();
    const key = `${repo}\0${path}`;
    const pause = pauses.get(key);
    if (!pause) return void res.end(file.bytes);
    pauses.delete(key);
    const cut = Math.min(pause.afterBytes, file.bytes.length);
    res.write(file.bytes.subarray(0, cut), () => pause.reached());
    void pause.released.then((next) => {
      if (res.destroyed) return;
      if (next === 'cut') res.destroy();
      else res.end(file.bytes.subarray(cut));
    });
  }

  await Promise.all([listen(hub), listen(cdn)]);
  const cdnUrl = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}`;
  return {
    url: `http://127.0.0.1:${(hub.address() as AddressInfo).port}`,
    requests,
    pauseDownload(repo, file, afterBytes) {
      let reached!: () => void;
      let settle!: (next: 'send' | 'cut') => void;
      const reachedPromise = new Promise<void>((resolve) => (reached = resolve));
      pauses.set(`${repo}\0${file}`, { afterBytes, reached, released: new Promise((resolve) => (settle = resolve)) });
      return { reached: reachedPromise, release: () => settle('send'), cut: () => settle('cut') };
    },
    failNext(count, status = 503) {
      failures = { count, status };
    },
    async close() {
      await Promise.all([stop(hub), stop(cdn)]);
    },
  };
}

function repoNotFound(res: ServerResponse, token: string | undefined): void {
  // The hub answers 401 to anonymous callers so as not to reveal private repositories.
  hubError(res, token === undefined ? 401 : 404, 'RepoNotFound', 'Repository not found');
}

function hubError(res: ServerResponse, status: number, code: string | null, message: string): void {
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'x-error-message': message,
    ...(code ? { 'x-error-code': code } : {}),
  });
  res.end(JSON.stringify({ error: message }));
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(body));
}

function listen(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
}

function stop(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}
