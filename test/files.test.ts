import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectValid, loadOpenApiValidator } from './support/openapi.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { silentLogger } from '../lib/logging.js';
import { sweepExpiredUploads } from '../subgraphs/files/index.js';
import { FileStore } from '../subgraphs/files/store.js';

let t: TestPlatform;
let client: OpenAI;

const chatLine = (i: number) =>
  JSON.stringify({
    messages: [
      { role: 'user', content: `question ${i}` },
      { role: 'assistant', content: `answer ${i}` },
    ],
  });
const jsonl = (n: number) => Array.from({ length: n }, (_, i) => chatLine(i)).join('\n') + '\n';

/** Every object the store holds, to prove nothing was left behind. */
async function storedKeys(): Promise<string[]> {
  const keys: string[] = [];
  for await (const object of t.platform.objectStore.list('')) keys.push(object.key);
  return keys.sort();
}

beforeAll(async () => {
  t = await startTestPlatform({ config: { files: { maxFileBytes: 64 * 1024, uploadExpirySeconds: 3600, maxFineTuneLineBytes: 4096 } } });
  client = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await t?.close();
});

describe('OpenAI files API with the official SDK', () => {
  it('uploads a JSONL file, retrieves it and downloads identical bytes', async () => {
    const text = jsonl(3);
    const file = await client.files.create({ file: await toFile(Buffer.from(text), 'train.jsonl'), purpose: 'fine-tune' });
    expect(file).toMatchObject({ object: 'file', bytes: Buffer.byteLength(text), filename: 'train.jsonl', purpose: 'fine-tune', status: 'processed' });
    expect(file.id).toMatch(/^file-/);
    const retrieved = await client.files.retrieve(file.id);
    expect(retrieved).toEqual(file);
    const content = await client.files.content(file.id);
    expect(await content.text()).toBe(text);
  });

  it('lists every file through auto-pagination, newest first by default', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const f = await client.files.create({ file: await toFile(Buffer.from(`note ${i}`), `note-${i}.txt`), purpose: 'assistants' });
      ids.push(f.id);
    }
    const seen: string[] = [];
    for await (const f of client.files.list({ purpose: 'assistants', limit: 2 })) seen.push(f.id);
    expect(seen).toEqual([...ids].reverse());
    const page = await client.files.list({ purpose: 'assistants', limit: 2, order: 'asc' });
    expect(page.data.map((f) => f.id)).toEqual(ids.slice(0, 2));
    expect(page.has_more).toBe(true);
  });

  it('deletes a file and its bytes', async () => {
    const file = await client.files.create({ file: await toFile(Buffer.from('bye'), 'bye.txt'), purpose: 'user_data' });
    const before = await storedKeys();
    expect(await client.files.delete(file.id)).toEqual({ id: file.id, object: 'file', deleted: true });
    await expect(client.files.retrieve(file.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expect(await storedKeys()).toEqual(before.filter((k) => !k.endsWith(file.id)));
  });

  it('a bad JSONL line is rejected with its line number and nothing is kept', async () => {
    const before = await storedKeys();
    const text = `${chatLine(1)}\n{"messages": "nope"}\n`;
    const error = await client.files.create({ file: await toFile(Buffer.from(text), 'bad.jsonl'), purpose: 'fine-tune' }).catch((e) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error.message).toContain('line 2');
    expect(await storedKeys()).toEqual(before);
    const listed = await client.files.list({ purpose: 'fine-tune' });
    expect(listed.data.map((f) => f.filename)).not.toContain('bad.jsonl');
  });

  it('a fine-tuning example longer than the line limit is a 400 naming the line and the limit, and nothing is kept', async () => {
    const before = await storedKeys();
    const long = JSON.stringify({ prompt: 'p', completion: 'x'.repeat(10_000) });
    const error = await client.files
      .create({ file: await toFile(Buffer.from(`${chatLine(1)}\n${long}\n${chatLine(3)}\n`), 'long.jsonl'), purpose: 'fine-tune' })
      .catch((e) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error.param).toBe('file');
    expect(error.message).toContain('line 2 is longer than 4096 bytes');
    expect(await storedKeys()).toEqual(before);
  });

  it('an unknown or missing purpose is a 400 and nothing is kept', async () => {
    const before = await storedKeys();
    const unknown = await client.files.create({ file: await toFile(Buffer.from('x'), 'x.txt'), purpose: 'nonsense' as never }).catch((e) => e);
    expect(unknown).toBeInstanceOf(OpenAI.BadRequestError);
    expect(unknown.param).toBe('purpose');
    const form = new FormData();
    form.append('file', new Blob(['x']), 'x.txt');
    const missing = await fetch(`${t.url}/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${t.adminKey}` }, body: form });
    expect(missing.status).toBe(400);
    expect((await missing.json()).error.param).toBe('purpose');
    expect(await storedKeys()).toEqual(before);
  });

  it('an oversized file is a 413 and nothing is kept', async () => {
    const before = await storedKeys();
    const big = Buffer.alloc(200 * 1024, 'a');
    const error = await client.files.create({ file: await toFile(big, 'big.txt'), purpose: 'assistants' }).catch((e) => e);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect(error.status).toBe(413);
    expect(await storedKeys()).toEqual(before);
  });

  it('a malformed multipart body is a 400 and nothing is kept', async () => {
    const before = await storedKeys();
    const response = await fetch(`${t.url}/v1/files`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'multipart/form-data; boundary=xyz' },
      body: '--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nunterminated',
    });
    expect(response.status).toBe(400);
    expect((await response.json()).error.type).toBe('invalid_request_error');
    expect(await storedKeys()).toEqual(before);
  });

  it('errors surface as the SDK’s typed errors', async () => {
    const anonymous = new OpenAI({ apiKey: 'sk-wrong-key-0000000000000000000000', baseURL: `${t.url}/v1`, maxRetries: 0 });
    await expect(anonymous.files.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    await expect(client.files.retrieve('file-doesnotexist')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.files.retrieve('not-an-id')).rejects.toBeInstanceOf(OpenAI.BadRequestError);
  });

  it('a file of another project is not found', async () => {
    const mine = await client.files.create({ file: await toFile(Buffer.from('private'), 'private.txt'), purpose: 'user_data' });
    const { createOrganization } = await t.gqlOk(`mutation { createOrganization(input: { title: "Other" }) { id } }`);
    const { createProject } = await t.gqlOk(`mutation($o: ID!) { createProject(input: { organizationId: $o, title: "Other" }) { id } }`, {
      o: createOrganization.id,
    });
    const { createApiKey } = await t.gqlOk(`mutation($p: ID!) { createApiKey(input: { name: "other", projectId: $p }) { secret } }`, { p: createProject.id });
    const other = new OpenAI({ apiKey: createApiKey.secret, baseURL: `${t.url}/v1`, maxRetries: 0 });
    await expect(other.files.retrieve(mine.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(other.files.delete(mine.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expect((await other.files.list()).data).toEqual([]);
    expect((await client.files.retrieve(mine.id)).id).toBe(mine.id);
  });

  it('unknown routes answer 404 in the OpenAI error shape', async () => {
    const response = await fetch(`${t.url}/v1/assistants`, { headers: { authorization: `Bearer ${t.adminKey}` } });
    expect(response.status).toBe(404);
    expect(response.headers.get('x-request-id')).toBeTruthy();
    expect(await response.json()).toEqual({
      error: { message: 'Invalid URL (GET /v1/assistants)', type: 'invalid_request_error', param: null, code: 'not_found' },
    });
  });

  it('every response and error body matches the OpenAI API description', async () => {
    const spec = loadOpenApiValidator();
    const call = async (method: string, path: string, body?: FormData) => {
      const response = await fetch(`${t.url}${path}`, { method, headers: { authorization: `Bearer ${t.adminKey}` }, ...(body ? { body } : {}) });
      return { status: response.status, body: await response.json() };
    };
    const form = new FormData();
    form.append('purpose', 'fine-tune');
    form.append('file', new Blob([jsonl(2)]), 'spec.jsonl');
    const created = await call('POST', '/v1/files', form);
    expectValid(spec.validateResponse('POST', '/v1/files', created.status, created.body));
    const id = created.body.id as string;
    for (const [method, path] of [
      ['GET', '/v1/files'],
      ['GET', '/v1/files?purpose=batch'],
      ['GET', `/v1/files/${id}`],
      ['DELETE', `/v1/files/${id}`],
      ['GET', `/v1/files/${id}`],
      ['GET', '/v1/files/not-an-id'],
    ] as const) {
      const result = await call(method, path);
      expectValid(spec.validateResponse(method, path, result.status, result.body));
    }
    const bad = new FormData();
    bad.append('purpose', 'fine-tune');
    bad.append('file', new Blob(['not json']), 'bad.jsonl');
    const rejected = await call('POST', '/v1/files', bad);
    expect(rejected.status).toBe(400);
    expectValid(spec.validateResponse('POST', '/v1/files', rejected.status, rejected.body));
  });

  it('an object already in the store becomes a File without copying (createFromObjectPath)', async () => {
    const text = jsonl(2);
    await t.platform.objectStore.put(
      'datasets/shared/train.jsonl',
      (async function* () {
        yield Buffer.from(text);
      })(),
    );
    const response = await fetch(`${t.url}/v1/files:createFromObjectPath`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ object_path: t.platform.objectStore.uri('datasets/shared/train.jsonl'), purpose: 'fine-tune' }),
    });
    expect(response.status).toBe(200);
    const file = await response.json();
    expect(file).toMatchObject({ object: 'file', filename: 'train.jsonl', bytes: Buffer.byteLength(text), purpose: 'fine-tune' });
    expect(await (await client.files.content(file.id)).text()).toBe(text);
    // Deleting the File leaves the linked object alone: it was not ours.
    await client.files.delete(file.id);
    expect(await t.platform.objectStore.head('datasets/shared/train.jsonl')).not.toBeNull();
    const missing = await fetch(`${t.url}/v1/files:createFromObjectPath`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ object_path: t.platform.objectStore.uri('datasets/none.jsonl'), purpose: 'fine-tune' }),
    });
    expect(missing.status).toBe(404);
  });

  it('an upload begun but never completed is swept with its bytes', async () => {
    const before = await storedKeys();
    const { beginFileUpload } = await t.gqlOk(`mutation { beginFileUpload(input: { filename: "left.txt" }) { id objectKey } }`);
    await t.platform.objectStore.put(
      beginFileUpload.objectKey,
      (async function* () {
        yield Buffer.from('abandoned');
      })(),
    );
    expect(await storedKeys()).toContain(beginFileUpload.objectKey);
    const swept = await sweepExpiredUploads(new FileStore(t.platform.db.knex), t.platform.objectStore, silentLogger(), new Date(Date.now() + 2 * 3600 * 1000));
    expect(swept).toBeGreaterThanOrEqual(1);
    expect(await storedKeys()).toEqual(before);
    const complete = await t.gql(`mutation($id: ID!) { completeFileUpload(input: { id: $id, purpose: "assistants" }) { id } }`, { id: beginFileUpload.id });
    expect(complete.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
  });
});
