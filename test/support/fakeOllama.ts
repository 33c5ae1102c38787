import { createHash } from 'node:crypto';
import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * An Ollama registry test double on loopback (registry.ollama.ai), speaking the part of its OCI
 * distribution API that `ollama pull` (and the agent's model loader) uses:
 *
 * - `GET /v2/library/<name>/manifests/<tag>`: the Docker v2 manifest JSON
 *   (`application/vnd.docker.distribution.manifest.v2+json`, as the registry answers), whose config is
 *   `application/vnd.docker.container.image.v1+json` and whose layers are `{ mediaType, digest, size }`
 *   with the media types `application/vnd.ollama.image.model` (the GGUF), `.template`, `.params`, `.license`.
 * - `GET /v2/library/<name>/blobs/<digest>`: a blob by its sha256 digest.
 * - Unknown models, tags and blobs: 404 with the registry's `{"errors":[{"code":"MANIFEST_UNKNOWN"|"BLOB_UNKNOWN",...}]}`.
 */
export interface FakeOllama {
  /** The registry's base URL (the loader's `ollama.registry`). */
  url: string;
  /** Every request, in order. */
  requests: { method: string; path: string }[];
  /** The next download of `name`'s model blob sends these bytes instead of its own (a corrupted blob). */
  corruptNextModelBlob(name: string, count?: number): void;
  close(): Promise<void>;
}

/** A model of the fake library: its layers' contents (params as JSON text). */
export interface FakeOllamaModel {
  gguf: Buffer;
  template?: string;
  params?: Record<string, unknown>;
  license?: string;
}

const MANIFEST_TYPE = 'application/vnd.docker.distribution.manifest.v2+json';

/** `models` by `name:tag` (a bare name is `name:latest`). */
export async function startFakeOllama(models: Record<string, FakeOllamaModel>): Promise<FakeOllama> {
  const blobs = new Map<string, Buffer>();
  const manifests = new Map<string, string>();
  const modelBlob = new Map<string, string>();
  const corrupt = new Map<string, number>();
  const add = (bytes: Buffer) => {
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    blobs.set(digest, bytes);
    return { digest, size: bytes.length };
  };
  for (const [reference, model] of Object.entries(models)) {
    const [name, tag = 'latest'] = reference.split(':') as [string, string | undefined];
    const layers = [
      { mediaType: 'application/vnd.ollama.image.model', ...add(model.gguf) },
      ...(model.template === undefined ? [] : [{ mediaType: 'application/vnd.ollama.image.template', ...add(Buffer.from(model.template)) }]),
      ...(model.license === undefined ? [] : [{ mediaType: 'application/vnd.ollama.image.license', ...add(Buffer.from(model.license)) }]),
      ...(model.params === undefined ? [] : [{ mediaType: 'application/vnd.ollama.image.params', ...add(Buffer.from(JSON.stringify(model.params))) }]),
    ];
    const config = add(Buffer.from(JSON.stringify({ model_format: 'gguf', model_family: 'llama', file_type: 'Q4_0', architecture: 'amd64', os: 'linux' })));
    modelBlob.set(name, layers[0]!.digest);
    manifests.set(
      `${name}:${tag}`,
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MANIFEST_TYPE,
        config: { mediaType: 'application/vnd.docker.container.image.v1+json', ...config },
        layers,
      }),
    );
  }

  const requests: FakeOllama['requests'] = [];
  const notFound = (res: http.ServerResponse, code: string, message: string) => {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ errors: [{ code, message }] }));
  };
  const server: Server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://registry').pathname;
    requests.push({ method: req.method ?? 'GET', path });
    const manifest = /^\/v2\/library\/([^/]+)\/manifests\/([^/]+)$/.exec(path);
    const blob = /^\/v2\/library\/([^/]+)\/blobs\/(sha256:[0-9a-f]{64})$/.exec(path);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
    } else if (manifest) {
      const body = manifests.get(`${decodeURIComponent(manifest[1]!)}:${decodeURIComponent(manifest[2]!)}`);
      if (!body) return notFound(res, 'MANIFEST_UNKNOWN', 'manifest unknown');
      res.writeHead(200, { 'content-type': MANIFEST_TYPE, 'docker-content-digest': `sha256:${createHash('sha256').update(body).digest('hex')}` });
      res.end(req.method === 'HEAD' ? undefined : body);
    } else if (blob) {
      const [, name, digest] = blob as unknown as [string, string, string];
      let bytes = blobs.get(digest);
      if (!bytes) return notFound(res, 'BLOB_UNKNOWN', 'blob unknown to registry');
      const left = corrupt.get(name) ?? 0;
      if (left > 0 && modelBlob.get(name) === digest) {
        corrupt.set(name, left - 1);
        bytes = Buffer.from(bytes);
        bytes[bytes.length - 1] ^= 0xff;
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length, 'docker-content-digest': digest });
      res.end(req.method === 'HEAD' ? undefined : bytes);
    } else {
      notFound(res, 'NAME_UNKNOWN', 'repository name not known to registry');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    corruptNextModelBlob(name, count = 1) {
      corrupt.set(name, count);
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
