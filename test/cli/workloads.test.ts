import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { waitFor } from '../support/until.js';
import { cliAgainstPlatform } from './cliAgainstPlatform.js';

/**
 * Issue 19: `mariner models create`, `batch jobs`, `batches` and `notebooks` (vector stores: vectorStores.test.ts), each
 * command a child process against a whole platform with the demo model and the embedded local agent
 * (batch commands allowed on it), as a platform admin and as the owner of another organization, who
 * sees none of the first one's resources.
 */
describe('mariner models create, batch jobs, batches and notebooks', () => {
  const platform = cliAgainstPlatform({ defaultCluster: true, demoModel: true, config: { jobs: { dispatchIntervalMs: 300, localBatchJobs: true } } });
  const { cli, asOther, ok, json, file } = platform;

  it('models create --file uploads a local GGUF file, the loader loads it (--wait), and delete removes it; another organization neither sees nor creates one', async () => {
    file('tiny.gguf', 'GGUF not really weights');
    const model = await json(['models', 'create', 'tiny-cli', '--file', 'tiny.gguf', '--wait']);
    expect(model).toMatchObject({
      id: 'tiny-cli',
      isBaseModel: true,
      sourceRepository: 'FILE',
      loadingStatus: 'SUCCEEDED',
      formats: ['GGUF'],
      activationStatus: 'INACTIVE',
    });
    expect((await json(['models', 'list'])).items.map((m: { id: string }) => m.id)).toContain('tiny-cli');
    const table = await ok(['models', 'get', 'tiny-cli']);
    expect(table).toMatch(/loading:\s+succeeded/);

    // The other organization: the model is the first project's; creating base models is the platform admins'.
    expect((await json(['models', 'list'], platform.other.key)).items.map((m: { id: string }) => m.id)).not.toContain('tiny-cli');
    const theirs = await asOther(['models', 'delete', 'tiny-cli']);
    expect(theirs.code).toBe(1);
    expect(theirs.stderr).toContain('(NOT_FOUND)');
    const create = await asOther(['models', 'create', 'mine', '--hugging-face', 'org/model']);
    expect(create.code).toBe(1);
    expect(create.stderr).toMatch(/\((FORBIDDEN|PERMISSION_DENIED)\)/);

    expect(await json(['models', 'delete', 'tiny-cli'])).toEqual({ id: 'tiny-cli', deleted: true });
    expect((await cli(['models', 'get', 'tiny-cli'])).code).toBe(1);
  }, 120_000);

  it('models create says what is wrong: no source or two (exit 2), a malformed repository, a load that fails (exit 1)', async () => {
    const none = await cli(['models', 'create', 'nothing']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('give exactly one source');
    const two = await cli(['models', 'create', 'two', '--ollama', 'qwen2', '--hugging-face', 'a/b']);
    expect(two.code).toBe(2);
    const badRepo = await cli(['models', 'create', 'bad', '--hugging-face', 'not a repo']);
    expect(badRepo.code).toBe(1);
    expect(badRepo.stderr).toContain('a Hugging Face repository looks like org/name');
    const missing = await cli(['models', 'create', 'gone', '--file', 'no-such.gguf']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('cannot read no-such.gguf: ENOENT');

    file('notes.txt', 'not a model');
    const failed = await cli(['models', 'create', 'notes-cli', '--file', 'notes.txt', '--wait']);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain('model notes-cli failed to load: ');
    expect(failed.stderr).toContain('format');
    await ok(['models', 'delete', 'notes-cli']);
  }, 120_000);

  it('batch jobs: create from a script folder, logs -f until it ends, get, list, delete; another organization sees none of it', async () => {
    const scripts = path.join(platform.home, 'job');
    mkdirSync(scripts, { recursive: true });
    writeFileSync(
      path.join(scripts, 'hello.mjs'),
      "import { readdirSync } from 'node:fs';\nconsole.log(`hello, ${process.env.GREETING}; scripts: ${readdirSync('scripts').sort().join(', ')}`);\n",
    );
    writeFileSync(path.join(scripts, 'util.sh'), 'echo unused\n');
    const job = await json([
      'batch',
      'jobs',
      'create',
      '--image',
      'pytorch-2.1',
      '--scripts',
      'job',
      '--command',
      'node scripts/hello.mjs',
      '--env',
      'GREETING=world',
    ]);
    expect(job).toMatchObject({ id: expect.stringMatching(/^batchjob-/), status: 'QUEUED', scripts: expect.arrayContaining(['hello.mjs', 'util.sh']) });

    const followed = await cli(['batch', 'jobs', 'logs', job.id, '-f']);
    expect(followed.code, followed.stderr).toBe(0);
    expect(followed.stdout).toContain('hello, world; scripts: hello.mjs, util.sh');
    expect(followed.stderr).toContain(`job ${job.id} succeeded`);
    expect((await json(['batch', 'jobs', 'get', job.id])).status).toBe('SUCCEEDED');
    const { lines } = await json(['batch', 'jobs', 'logs', job.id]);
    expect(lines.map((l: { text: string }) => l.text)).toContain('hello, world; scripts: hello.mjs, util.sh');
    expect((await json(['batch', 'jobs', 'list'])).items.map((j: { id: string }) => j.id)).toContain(job.id);
    expect(await ok(['batch', 'jobs', 'list'])).toMatch(new RegExp(`${job.id}\\s+succeeded\\s+\\S+\\s+node scripts/hello\\.mjs`));

    expect((await json(['batch', 'jobs', 'list'], platform.other.key)).items).toEqual([]);
    for (const args of [
      ['batch', 'jobs', 'get', job.id],
      ['batch', 'jobs', 'logs', job.id],
      ['batch', 'jobs', 'delete', job.id],
    ]) {
      const refused = await asOther(args);
      expect(refused.code, args.join(' ')).toBe(1);
      expect(refused.stderr).toMatch(/not found|NOT_FOUND/);
      expect(refused.stdout).not.toContain('hello, world');
    }

    expect(await json(['batch', 'jobs', 'delete', job.id])).toEqual({ id: job.id, deleted: true });
    expect((await cli(['batch', 'jobs', 'get', job.id])).code).toBe(1);

    const badEnv = await cli(['batch', 'jobs', 'create', '--image', 'pytorch-2.1', '--command', 'true', '--env', 'NOVALUE']);
    expect(badEnv.code).toBe(2);
    expect(badEnv.stderr).toContain('--env takes NAME=value');
    mkdirSync(path.join(scripts, 'nested'), { recursive: true });
    const nested = await cli(['batch', 'jobs', 'create', '--image', 'pytorch-2.1', '--command', 'true', '--scripts', 'job']);
    expect(nested.code).toBe(2);
    expect(nested.stderr).toContain('one flat folder');
    const badImage = await cli(['batch', 'jobs', 'create', '--image', 'NOT AN IMAGE', '--command', 'true']);
    expect(badImage.code).toBe(1);
    expect(badImage.stderr).toContain('is neither a preset');
  }, 180_000);

  it('batches: create from a local JSONL file, --wait until completed, list, get; cancel of a finished one is refused; invisible to another organization', async () => {
    const request = (id: string) =>
      JSON.stringify({
        custom_id: id,
        method: 'POST',
        url: '/v1/chat/completions',
        body: { model: 'mariner-demo', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 },
      });
    file('requests.jsonl', `${request('a')}\n${request('b')}\n`);
    const batch = await json(['batches', 'create', '--input-file', 'requests.jsonl', '--metadata', 'team=cli', '--wait']);
    expect(batch).toMatchObject({
      id: expect.stringMatching(/^batch_/),
      status: 'COMPLETED',
      endpoint: '/v1/chat/completions',
      requestCounts: { total: 2, completed: 2, failed: 0 },
      metadata: { team: 'cli' },
      outputFileId: expect.stringMatching(/^file-/),
    });
    const answers = await ok(['files', 'download', batch.outputFileId, '--out', '-']);
    expect(
      answers
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line).custom_id)
        .sort(),
    ).toEqual(['a', 'b']);
    expect((await json(['batches', 'list'])).items.map((b: { id: string }) => b.id)).toContain(batch.id);
    expect(await ok(['batches', 'get', batch.id])).toMatch(/requests:\s+2\/2 done/);
    const cancel = await cli(['batches', 'cancel', batch.id]);
    expect(cancel.code).toBe(1);

    expect((await json(['batches', 'list'], platform.other.key)).items).toEqual([]);
    for (const args of [
      ['batches', 'get', batch.id],
      ['batches', 'cancel', batch.id],
      ['batches', 'create', '--input-file', batch.inputFileId],
    ]) {
      const refused = await asOther(args);
      expect(refused.code, args.join(' ')).toBe(1);
      expect(refused.stderr).toMatch(/not found|NOT_FOUND/);
    }

    const badEndpoint = await cli(['batches', 'create', '--input-file', 'requests.jsonl', '--endpoint', '/v1/nope']);
    expect(badEndpoint.code).toBe(2);
    file('broken.jsonl', '{"custom_id":"x"}\n');
    const broken = await cli(['batches', 'create', '--input-file', 'broken.jsonl']);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(/line 1/);
  }, 180_000);

  it("notebooks: create, list and get one; the local executor cannot run Jupyter, so it fails with the cluster's reason and open refuses; delete; another organization sees none of it", async () => {
    const created = await json(['notebooks', 'create', 'analysis', '--image', 'jupyter-lab-base', '--env', 'DATASET=demo', '--port', '8050']);
    expect(created).toMatchObject({
      id: expect.stringMatching(/^nb-/),
      name: 'analysis',
      status: 'QUEUED',
      additionalExposedPorts: [8050],
      envs: [{ name: 'DATASET', value: 'demo' }],
    });
    expect(created).not.toHaveProperty('token');
    const failed = await waitFor(
      () => json(['notebooks', 'get', 'analysis']),
      (n) => n.status === 'FAILED',
      'the local executor to refuse the notebook',
      90_000,
    );
    expect(failed.error.message).toContain('Kubernetes');
    expect(failed.token).toMatch(/^\S{48}$/);
    expect(await ok(['notebooks', 'list'])).toMatch(new RegExp(`${created.id}\\s+analysis\\s+failed`));

    const open = await cli(['notebooks', 'open', 'analysis', '--no-browser']);
    expect(open.code).toBe(1);
    expect(open.stderr).toContain('notebook analysis is failed');
    expect(open.stderr).toContain('not running');
    expect(open.stdout).toBe('');

    expect((await json(['notebooks', 'list'], platform.other.key)).items).toEqual([]);
    for (const args of [
      ['notebooks', 'get', created.id],
      ['notebooks', 'get', 'analysis'],
      ['notebooks', 'open', created.id],
      ['notebooks', 'delete', created.id],
    ]) {
      const refused = await asOther(args);
      expect(refused.code, args.join(' ')).toBe(1);
      expect(refused.stderr).toMatch(/not found|NOT_FOUND/);
      expect(refused.stdout).not.toContain(failed.token);
    }

    const badName = await cli(['notebooks', 'create', 'Bad_Name']);
    expect(badName.code).toBe(1);
    const badPort = await cli(['notebooks', 'create', 'x', '--port', '99999']);
    expect(badPort.code).toBe(2);

    const deleted = await json(['notebooks', 'delete', 'analysis']);
    expect(deleted.id).toBe(created.id);
    await waitFor(
      () => json(['notebooks', 'list']),
      (page) => !page.items.some((n: { id: string }) => n.id === created.id),
      'the notebook to be gone',
      60_000,
    );
  }, 180_000);
});
