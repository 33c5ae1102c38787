/**
 * The OpenAI schema validator the REST tests lean on: it must accept OpenAI's own example shapes,
 * and it must be able to fail (a validator that passes everything proves nothing). The first part
 * runs against the vendored OpenAI API description; the second against a small description written
 * here, to pin each OpenAPI-to-JSON-Schema conversion on its own.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { expectValid, loadOpenApiValidator, type OpenApiValidator } from './openapi.js';

/** OpenAI API: the file object. `status` is deprecated but still required by the schema. */
const file = {
  id: 'file-abc',
  object: 'file',
  bytes: 120,
  created_at: 1700000000,
  filename: 'a.jsonl',
  purpose: 'fine-tune',
  status: 'processed',
};
const model = { id: 'llama-3-8b', object: 'model', created: 1700000000, owned_by: 'tenant-a' };
const notFound = { error: { message: 'No such file: file-zzz', type: 'invalid_request_error', param: null, code: null } };

describe('the OpenAI API description', () => {
  let openai: OpenApiValidator;
  beforeAll(() => {
    openai = loadOpenApiValidator();
  });

  it('is OpenAPI 3.1, loaded once per process', () => {
    expect(openai.openapiVersion).toMatch(/^3\.1\./);
    expect(loadOpenApiValidator()).toBe(openai);
  });

  it('accepts a correct file object from upload and retrieve', () => {
    expect(openai.validateSchema('OpenAIFile', file)).toEqual([]);
    expect(openai.validateResponse('POST', '/v1/files', 200, file)).toEqual([]);
    expect(openai.validateResponse('GET', '/v1/files/file-abc', 200, file)).toEqual([]);
    expect(openai.validateResponse('get', '/files/file-abc', 200, file)).toEqual([]);
    expect(openai.validateResponse('GET', 'http://127.0.0.1:4000/v1/files/file-abc', 200, file)).toEqual([]);
  });

  it('rejects a file object without an id, naming the missing field', () => {
    const { id: _id, ...withoutId } = file;
    expect(openai.validateResponse('GET', '/v1/files/file-abc', 200, withoutId)).toEqual(["OpenAIFile: (root) must have required property 'id'"]);
  });

  it('rejects bytes sent as a string, showing the path and the value', () => {
    expect(openai.validateSchema('OpenAIFile', { ...file, bytes: '120' })).toEqual(['OpenAIFile: /bytes must be integer (got "120")']);
  });

  it('rejects an unknown purpose, listing the allowed ones', () => {
    const [error] = openai.validateSchema('OpenAIFile', { ...file, purpose: 'training' });
    expect(error).toContain('/purpose must be equal to one of the allowed values');
    expect(error).toContain('"fine-tune"');
    expect(error).toContain('(got "training")');
  });

  it('rejects timestamps in milliseconds (OpenAI timestamps are Unix seconds)', () => {
    expect(openai.validateSchema('OpenAIFile', { ...file, created_at: 1700000000000 })).toEqual([
      'OpenAIFile: /created_at must match format "unixtime" (got 1700000000000)',
    ]);
  });

  it('rejects a body that is not an object even though OpenAIFile declares no type', () => {
    expect(openai.validateSchema('OpenAIFile', 'file-abc')).toEqual(['OpenAIFile: (root) must be object (got "file-abc")']);
    expect(openai.validateSchema('Model', [model])).not.toEqual([]);
  });

  it('accepts a file list and reports a bad item by its index', () => {
    const list = { object: 'list', data: [file], has_more: false, first_id: 'file-abc', last_id: 'file-abc' };
    expect(openai.validateResponse('GET', '/v1/files?limit=1', 200, list)).toEqual([]);
    const { first_id: _first, ...withoutFirst } = list;
    expect(openai.validateResponse('GET', '/v1/files', 200, withoutFirst)).toEqual(["ListFilesResponse: (root) must have required property 'first_id'"]);
    expect(openai.validateResponse('GET', '/v1/files', 200, { ...list, data: [{ ...file, bytes: -1.5 }] })).toEqual([
      'ListFilesResponse: /data/0/bytes must be integer (got -1.5)',
    ]);
  });

  it('accepts a file deletion and a file download', () => {
    const deleted = { id: 'file-abc', object: 'file', deleted: true };
    expect(openai.validateResponse('DELETE', '/v1/files/file-abc', 200, deleted)).toEqual([]);
    expect(openai.validateResponse('DELETE', '/v1/files/file-abc', 200, { ...deleted, object: 'file.deleted' })).not.toEqual([]);
    // The description types the download as a JSON string: any text passes, an object does not.
    expect(openai.validateResponse('GET', '/v1/files/file-abc/content', 200, '{"prompt":"hi"}\n')).toEqual([]);
    expect(openai.validateResponse('GET', '/v1/files/file-abc/content', 200, {})).not.toEqual([]);
  });

  it('accepts model list, retrieve and delete bodies', () => {
    expect(openai.validateResponse('GET', '/v1/models', 200, { object: 'list', data: [model] })).toEqual([]);
    expect(openai.validateResponse('GET', `/v1/models/${encodeURIComponent('ft:llama/3:tenant-a')}`, 200, model)).toEqual([]);
    expect(openai.validateResponse('DELETE', '/v1/models/llama-3-8b', 200, { id: 'llama-3-8b', object: 'model', deleted: true })).toEqual([]);
    expect(openai.validateResponse('GET', '/v1/models/llama-3-8b', 200, { ...model, created: '2024-01-01' })).toEqual([
      'Model: /created must be integer (got "2024-01-01")',
    ]);
  });

  it('checks error statuses the operation does not list against ErrorResponse', () => {
    expect(openai.validateResponse('GET', '/v1/files/{id}', 404, notFound)).toEqual([]);
    expect(openai.validateResponse('GET', '/v1/files/file-zzz', 404, notFound)).toEqual([]);
    expect(openai.validateSchema('ErrorResponse', notFound)).toEqual([]);
    const errors = openai.validateResponse('GET', '/v1/files/file-zzz', 404, { error: { message: 'x', type: 'invalid_request_error', code: 404 } });
    expect(errors).toContain("ErrorResponse: /error must have required property 'param'");
    expect(errors).toContain('ErrorResponse: /error/code must be string (got 404)');
    expect(openai.validateResponse('POST', '/v1/files', 400, { message: 'flat' })).toEqual(["ErrorResponse: (root) must have required property 'error'"]);
  });

  it('uses the error response an operation does list (429 → TooManyRequests → ErrorResponse)', () => {
    expect(openai.validateResponse('POST', '/v1/chat/completions', 429, notFound)).toEqual([]);
    expect(openai.validateResponse('POST', '/v1/chat/completions', 429, {})).not.toEqual([]);
  });

  it('refuses to validate against nothing', () => {
    expect(() => openai.validateResponse('GET', '/v1/widgets', 200, {})).toThrow(/No path .* matches \/v1\/widgets/);
    expect(() => openai.validateResponse('PUT', '/v1/files/file-abc', 200, file)).toThrow(
      /no PUT for \/v1\/files\/file-abc \(it has GET \/files\/\{file_id\}, DELETE \/files\/\{file_id\}\)/,
    );
    expect(() => openai.validateResponse('GET', '/v1/files', 201, {})).toThrow(/lists no 201 response for GET \/files/);
    expect(() => openai.validateResponse('POST', '/v1/audio/speech', 200, {})).toThrow(/no JSON schema/);
    expect(() => openai.validateSchema('FileObject', file)).toThrow(/no component schema 'FileObject'/);
  });

  it('expectValid passes an empty list and throws one listing every error', () => {
    expect(() => expectValid([])).not.toThrow();
    expect(() => expectValid(openai.validateSchema('OpenAIFile', { ...file, id: 7, bytes: '120' }))).toThrow(
      'Body does not match the OpenAI API schema (2 errors):\n' +
        '  - OpenAIFile: /id must be string (got 7)\n' +
        '  - OpenAIFile: /bytes must be integer (got "120")',
    );
  });

  it('compiles every JSON response schema the description has', () => {
    // Guards the conversion against constructs a spec update brings in (whole spec: ~2.5 s).
    const doc = parse(readFileSync(openai.specPath, 'utf8'), { maxAliasCount: -1 }) as {
      paths: Record<string, Record<string, { responses?: Record<string, { content?: Record<string, unknown> }> }>>;
    };
    let compiled = 0;
    for (const [template, item] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(item)) {
        for (const [status, response] of Object.entries(operation.responses ?? {})) {
          if (!/^\d{3}$/.test(status)) continue;
          const content = Object.keys(response.content ?? {});
          // Skip audio, SSE, SDP, and bodiless responses; a `$ref` response is always JSON here.
          if (content.length > 0 && !content.includes('application/json')) continue;
          if (content.length === 0 && !('$ref' in response)) continue;
          expect(Array.isArray(openai.validateResponse(method, template, Number(status), {}))).toBe(true);
          compiled++;
        }
      }
    }
    expect(compiled).toBeGreaterThan(400);
  });
});

describe('converting OpenAPI schemas (a small description)', () => {
  let dir: string;
  let specPath: string;
  let widgets: OpenApiValidator;

  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'mariner-openapi-'));
    specPath = path.join(dir, 'widgets.yaml');
    writeFileSync(specPath, stringify(widgetsSpec));
    widgets = loadOpenApiValidator(specPath);
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  const widget = { id: 'w-1', note: null, size: 1, shape: { kind: 'circle', radius: 2 } };

  it('accepts a valid body despite example, x-* and discriminator keywords', () => {
    expect(widgets.validateResponse('GET', '/v1/widgets/w-1', 200, widget)).toEqual([]);
  });

  it('treats nullable: true as allowing null, and only null', () => {
    expect(widgets.validateSchema('Widget', { ...widget, note: 'n' })).toEqual([]);
    expect(widgets.validateSchema('Widget', { ...widget, note: 5 })).toEqual(['Widget: /note must be string,null (got 5)']);
    expect(widgets.validateSchema('Widget', { ...widget, shape: null })).toEqual([]);
  });

  it('reads the OpenAPI 3.0 boolean exclusiveMinimum', () => {
    expect(widgets.validateSchema('Widget', { ...widget, size: 0 })).toEqual(['Widget: /size must be > 0 (got 0)']);
  });

  it('still enforces a oneOf once its discriminator is dropped', () => {
    expect(widgets.validateSchema('Widget', { ...widget, shape: { kind: 'square', radius: 2 } })).not.toEqual([]);
  });

  it('follows $recursiveRef to the enclosing schema', () => {
    expect(widgets.validateSchema('Filter', { filters: ['a', { filters: ['b', { filters: [] }] }] })).toEqual([]);
    expect(widgets.validateSchema('Filter', { filters: ['a', { filters: [3] }] })).not.toEqual([]);
  });

  it('prefers a literal path segment over a parameter', () => {
    expect(widgets.validateResponse('GET', '/v1/widgets/special', 200, { special: true })).toEqual([]);
    expect(widgets.validateResponse('GET', '/v1/widgets/w-2', 200, { special: true })).not.toEqual([]);
  });

  it('falls back to the default response for statuses the operation does not list', () => {
    expect(widgets.validateResponse('GET', '/v1/widgets/w-1', 503, { detail: 'down' })).toEqual([]);
    expect(widgets.validateResponse('GET', '/v1/widgets/w-1', 503, { error: 'down' })).toEqual(["Problem: (root) must have required property 'detail'"]);
  });

  it('is found through MARINER_OPENAPI_SPEC', () => {
    const before = process.env.MARINER_OPENAPI_SPEC;
    process.env.MARINER_OPENAPI_SPEC = specPath;
    try {
      expect(loadOpenApiValidator()).toBe(widgets);
    } finally {
      if (before === undefined) delete process.env.MARINER_OPENAPI_SPEC;
      else process.env.MARINER_OPENAPI_SPEC = before;
    }
  });

  it('says where it looked when the description is missing', () => {
    expect(() => loadOpenApiValidator(path.join(dir, 'missing.yaml'))).toThrow(/not found at .*missing\.yaml.*MARINER_OPENAPI_SPEC/);
  });
});

const json = (ref: string) => ({ content: { 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } } });

const widgetsSpec = {
  openapi: '3.1.0',
  info: { title: 'Widgets', version: '1' },
  servers: [{ url: 'https://widgets.example/v1' }],
  paths: {
    '/widgets/{widget_id}': {
      get: { responses: { '200': json('Widget'), default: json('Problem') } },
    },
    '/widgets/special': {
      get: {
        responses: {
          '200': {
            content: {
              'application/json': {
                schema: { type: 'object', required: ['special'], properties: { special: { const: true } } },
              },
            },
          },
        },
      },
    },
  },
  components: {
    schemas: {
      Widget: {
        // No `type`, as in OpenAI's OpenAIFile and Model.
        properties: {
          id: { type: 'string', example: 'w-1' },
          note: { type: 'string', nullable: true },
          size: { type: 'integer', minimum: 0, exclusiveMinimum: true },
          shape: {
            nullable: true,
            oneOf: [{ $ref: '#/components/schemas/Circle' }, { $ref: '#/components/schemas/Square' }],
            discriminator: { propertyName: 'kind', mapping: { circle: '#/components/schemas/Circle' } },
          },
        },
        required: ['id', 'note'],
        'x-oaiMeta': { name: 'The widget object' },
        example: { id: 'w-1' },
      },
      Circle: {
        type: 'object',
        required: ['kind', 'radius'],
        properties: { kind: { type: 'string', enum: ['circle'] }, radius: { type: 'number' } },
      },
      Square: {
        type: 'object',
        required: ['kind', 'side'],
        properties: { kind: { type: 'string', enum: ['square'] }, side: { type: 'number' } },
      },
      Filter: {
        $recursiveAnchor: true,
        type: 'object',
        properties: {
          filters: { type: 'array', items: { oneOf: [{ type: 'string' }, { $recursiveRef: '#' }] } },
        },
      },
      Problem: { type: 'object', required: ['detail'], properties: { detail: { type: 'string' } } },
    },
  },
};
