import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { projectWithKey } from '../support/tenants.js';

/**
 * Org B's owner against org A's project records, through the official OpenAI SDK: files and vector
 * stores belong to a project; another organization's ids answer 404 exactly like ids that
 * do not exist, and nothing of A changes. (Clusters, namespaces, models, jobs, runtimes and the
 * sessions proxies have their own files in test/security/.)
 */
let t: TestPlatform;
let sdkA: OpenAI;
let sdkB: OpenAI;

/** The HTTP status an SDK call failed with (the test fails if it succeeded). */
async function statusOf(call: Promise<unknown>): Promise<number> {
  try {
    await call;
  } catch (error) {
    if (error instanceof OpenAI.APIError) return error.status ?? 0;
    throw error;
  }
  throw new Error('the call succeeded');
}

beforeAll(async () => {
  t = await startTestPlatform();
  const a = await projectWithKey(t, 'Victim A', { role: 'OWNER' });
  const b = await projectWithKey(t, 'Attacker B', { role: 'OWNER' });
  sdkA = new OpenAI({ apiKey: a.key, baseURL: `${t.url}/v1`, maxRetries: 0 });
  sdkB = new OpenAI({ apiKey: b.key, baseURL: `${t.url}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await t?.close();
});

describe("another organization's files and vector stores", () => {
  it("B cannot list, read, download or delete A's file; A's file is untouched", async () => {
    const secret = 'A-only: the launch date is 2027-03-14';
    const file = await sdkA.files.create({ file: await toFile(Buffer.from(secret), 'plan.txt'), purpose: 'assistants' });

    const listed = await sdkB.files.list();
    expect(listed.data.map((f) => f.id)).not.toContain(file.id);
    expect(await statusOf(sdkB.files.retrieve(file.id))).toBe(404);
    expect(await statusOf(sdkB.files.content(file.id))).toBe(404);
    expect(await statusOf(sdkB.files.delete(file.id))).toBe(404);
    // The same answer as for an id that never existed: nothing tells B the file is there.
    expect(await statusOf(sdkB.files.retrieve('file-000000000000000000000000'))).toBe(404);

    expect(await (await sdkA.files.content(file.id)).text()).toBe(secret);
  });

  it("B cannot read, search, change or delete A's vector store, nor add A's file to its own", async () => {
    const store = await sdkA.vectorStores.create({ name: 'a-secrets' });
    const file = await sdkA.files.create({ file: await toFile(Buffer.from('A notes'), 'notes.txt'), purpose: 'assistants' });

    expect((await sdkB.vectorStores.list()).data.map((s) => s.id)).not.toContain(store.id);
    expect(await statusOf(sdkB.vectorStores.retrieve(store.id))).toBe(404);
    expect(await statusOf(sdkB.vectorStores.update(store.id, { name: 'pwned' }))).toBe(404);
    expect(await statusOf(sdkB.vectorStores.search(store.id, { query: 'launch' }))).toBe(404);
    expect(await statusOf(sdkB.vectorStores.files.list(store.id))).toBe(404);
    expect(await statusOf(sdkB.vectorStores.delete(store.id))).toBe(404);

    const own = await sdkB.vectorStores.create({ name: 'b-store' });
    expect(await statusOf(sdkB.vectorStores.files.create(own.id, { file_id: file.id }))).toBe(404);

    const kept = await sdkA.vectorStores.retrieve(store.id);
    expect(kept.name).toBe('a-secrets');
  });
});
