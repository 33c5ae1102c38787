import { describe, expect, it } from 'vitest';
import { cliAgainstPlatform } from './cliAgainstPlatform.js';

/**
 * Issue 19: `mariner vector-stores`, each command a child process against a whole platform on the
 * embedded database (its pgvector; the test PostgreSQL has none) with the demo model embedding, as the
 * admin and as the owner of another organization, who sees none of the first one's stores.
 */
describe('mariner vector-stores', () => {
  const platform = cliAgainstPlatform({ embedded: true, defaultCluster: true, demoModel: true });
  const { cli, asOther, ok, json, file } = platform;

  it('vector-stores: create from local files, search by meaning, add and remove files, delete; invisible to another organization', async () => {
    file('handbook.md', '# Handbook\nThe web console lives at /console. Sign in with an API key.\n');
    file('faq.txt', 'Mariner ships a demo model, mariner-demo, for trying things without a download.\n');
    const store = await json(['vector-stores', 'create', 'handbook', 'handbook.md', 'faq.txt', '--wait']);
    expect(store).toMatchObject({
      id: expect.stringMatching(/^vs_/),
      name: 'handbook',
      status: 'COMPLETED',
      fileCounts: { completed: 2, total: 2, failed: 0 },
    });

    const search = await json(['vector-stores', 'search', 'handbook', 'Is there a demo model?', '-n', '2']);
    expect(search.query).toEqual(['Is there a demo model?']);
    expect(search.items.length).toBeGreaterThan(0);
    expect(search.items.map((h: { filename: string }) => h.filename).sort()).toEqual(
      expect.arrayContaining([expect.stringMatching(/^(faq\.txt|handbook\.md)$/)]),
    );
    const table = await ok(['vector-stores', 'search', store.id, 'console']);
    expect(table).toMatch(/^\d\.\d{3} {2}(faq\.txt|handbook\.md) #\d+ \(file-/m);

    file('jobs.txt', 'Fine-tuning jobs run on the demo trainer.\n');
    const added = await json(['vector-stores', 'files', 'add', 'handbook', 'jobs.txt', '--attributes', '{"kind":"jobs"}', '--wait']);
    expect(added.store.fileCounts).toMatchObject({ completed: 3, total: 3 });
    const { items } = await json(['vector-stores', 'files', 'list', 'handbook']);
    expect(items.map((f: { filename: string }) => f.filename).sort()).toEqual(['faq.txt', 'handbook.md', 'jobs.txt']);
    expect(items.every((f: { status: string; chunkCount: number }) => f.status === 'COMPLETED' && f.chunkCount > 0)).toBe(true);
    const jobs = items.find((f: { filename: string }) => f.filename === 'jobs.txt');
    const filtered = await json(['vector-stores', 'search', 'handbook', 'trainer', '--filter', '{"type":"eq","key":"kind","value":"jobs"}']);
    expect(filtered.items.map((h: { fileId: string }) => h.fileId)).toEqual([jobs.id]);
    expect(await json(['vector-stores', 'files', 'remove', 'handbook', jobs.id])).toMatchObject({ id: jobs.id, deleted: true });
    expect((await json(['vector-stores', 'get', 'handbook'])).fileCounts.total).toBe(2);

    // Another organization: not listed, not found by name or id, not searchable, not deletable.
    expect((await json(['vector-stores', 'list'], platform.other.key)).items).toEqual([]);
    for (const args of [
      ['vector-stores', 'get', 'handbook'],
      ['vector-stores', 'search', store.id, 'demo'],
      ['vector-stores', 'delete', store.id],
      ['vector-stores', 'files', 'list', store.id],
    ]) {
      const refused = await asOther(args);
      expect(refused.code, args.join(' ')).toBe(1);
      expect(refused.stderr).toContain('not found');
    }
    expect((await json(['vector-stores', 'list'])).items.map((s: { id: string }) => s.id)).toContain(store.id);

    const badFilter = await cli(['vector-stores', 'search', 'handbook', 'x', '--filter', '{nope']);
    expect(badFilter.code).toBe(2);
    expect(await json(['vector-stores', 'delete', 'handbook'])).toEqual({ id: store.id, deleted: true });
    expect((await cli(['vector-stores', 'get', store.id])).code).toBe(1);
  }, 180_000);
});
