import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPlatform, type TestPlatform } from './support/platform.js';

/**
 * Issue 24 item 10: restarting with MARINER_ADMIN_API_KEY set to the key that already exists keeps that
 * one key: no second admin key at each start (the platform is started with a fixed key, as
 * MARINER_ADMIN_API_KEY gives it, and restarted on the same data).
 */
let t: TestPlatform;

beforeAll(async () => {
  t = await startTestPlatform({ embedded: true });
}, 120_000);
afterAll(async () => {
  await t?.close();
});

const bootstrapKeys = async () => {
  const { apiKeys } = await t.gqlOk<{ apiKeys: { items: { id: string; name: string }[] } }>('{ apiKeys(limit: 100) { items { id name } } }');
  return apiKeys.items.filter((key) => key.name === 'admin (bootstrap)');
};

describe('MARINER_ADMIN_API_KEY across restarts', () => {
  it('the same key on every start stays one key, the same one', async () => {
    const first = await bootstrapKeys();
    expect(first).toHaveLength(1);
    await t.restart();
    await t.restart();
    expect(await bootstrapKeys()).toEqual(first);
  }, 120_000);
});
