import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { execFileSync, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import YAML from 'yaml';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { projectWithKey } from '../support/tenants.js';
import { until } from '../support/until.js';
import { cliCommand, cliHome, ROOT, runCli, screenShows, tmuxSession, TSX, type CliResult } from './cliProcess.js';

/** A TCP relay to the platform that can cut every connection through it at once (a network drop). */
async function droppingRelay(target: URL): Promise<{ url: string; bytesToClient: () => number; drop(): void; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let toClient = 0;
  const server: Server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    upstream.on('data', (chunk: Buffer) => (toClient += chunk.length));
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    bytesToClient: () => toClient,
    drop: () => {
      for (const s of sockets) s.destroy();
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/**
 * Issue 19: the `mariner` command line, driven as a person (or a script) drives it: a child process per
 * command, with a home and config dir of its own, against a whole platform with the demo model and the
 * embedded local agent; interactive commands in a real terminal (tmux).
 */
describe('the mariner command line', () => {
  let t: TestPlatform;
  let home: string;
  let env: NodeJS.ProcessEnv;
  const cli = (args: string[], input?: string): Promise<CliResult> => runCli(env, args, { ...(input !== undefined ? { input } : {}), cwd: home });
  const ok = async (args: string[], input?: string): Promise<string> => {
    const result = await cli(args, input);
    if (result.code !== 0) throw new Error(`mariner ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
    return result.stdout;
  };
  const json = async <T = any>(args: string[]): Promise<T> => JSON.parse(await ok([...args, '-o', 'json'])) as T;

  beforeAll(async () => {
    t = await startTestPlatform({ defaultCluster: true, demoModel: true });
    ({ home, env } = cliHome());
  }, 60_000);
  afterAll(async () => {
    await t?.close();
  });

  it('login --api-key-stdin checks the key, saves it owner-only, and whoami names the user and project', async () => {
    const out = await ok(['login', '--url', t.url, '--api-key-stdin'], `${t.adminKey}\n`);
    expect(out).toContain('Logged in to');
    const file = path.join(home, '.config', 'mariner', 'config.yaml');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8')).toContain(t.adminKey);
    const who = await json(['whoami']);
    expect(who).toMatchObject({ url: t.url, user: 'admin@example.com', serviceAccount: false, project: { title: 'Default Project' } });
    expect(who.organizations).toEqual([expect.objectContaining({ title: 'Default Organization', role: 'OWNER' })]);
    const contexts = await json(['context', 'list']);
    expect(contexts.items).toEqual([expect.objectContaining({ current: true, url: t.url, apiKey: `${t.adminKey.slice(0, 5)}...${t.adminKey.slice(-2)}` })]);
  });

  it('a bad key is refused with exit 1 and a clear message, and nothing is saved', async () => {
    const before = readFileSync(path.join(home, '.config', 'mariner', 'config.yaml'), 'utf8');
    const result = await cli(['login', '--url', t.url, '--api-key-stdin', '--name', 'bad'], 'sk-not-a-real-key-0000000000000000\n');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('mariner: login failed: Invalid API key (UNAUTHENTICATED)');
    expect(readFileSync(path.join(home, '.config', 'mariner', 'config.yaml'), 'utf8')).toBe(before);
    const viaEnv = await runCli({ ...env, MARINER_URL: t.url, MARINER_API_KEY: 'sk-wrong-wrong-wrong-wrong' }, ['models', 'list']);
    expect(viaEnv.code).toBe(1);
    expect(viaEnv.stderr).toContain('Invalid API key');
  });

  it('bad arguments exit 2 and say what is wrong', async () => {
    const unknownOption = await cli(['models', 'list', '--bogus']);
    expect(unknownOption.code).toBe(2);
    expect(unknownOption.stderr).toContain("unknown option '--bogus'");
    const badFormat = await cli(['models', 'list', '-o', 'xml']);
    expect(badFormat.code).toBe(2);
    expect(badFormat.stderr).toContain('xml');
    const missing = await cli(['chat']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("missing required argument 'model'");
    const noSubcommand = await cli(['models']);
    expect(noSubcommand.code).toBe(2);
    expect(noSubcommand.stderr).toContain('Usage: mariner models');
    expect((await cli(['models', '--help'])).code).toBe(0);
    const badNumber = await cli(['chat', 'mariner-demo', '-m', 'hi', '--max-tokens', 'lots']);
    expect(badNumber.code).toBe(2);
    expect(badNumber.stderr).toContain('--max-tokens must be a whole number');
  });

  it('models list -o json: every model with its loading status, activation and runtimes', async () => {
    const { items } = await json<{ items: Record<string, unknown>[] }>(['models', 'list']);
    const demo = items.find((m) => m['id'] === 'mariner-demo');
    expect(demo).toMatchObject({ id: 'mariner-demo', isBaseModel: true, loadingStatus: 'SUCCEEDED', formats: ['GGUF'], runtimes: expect.any(Array) });
    expect(Object.keys(demo!).sort()).toEqual(
      [
        'activationStatus',
        'adapter',
        'baseModelId',
        'createdAt',
        'formats',
        'id',
        'isBaseModel',
        'loadingFailureReason',
        'loadingStatus',
        'loadingStatusMessage',
        'ownedBy',
        'projectId',
        'runtimes',
        'source',
        'sourceRepository',
      ].sort(),
    );
    const yaml = await ok(['models', 'get', 'mariner-demo', '-o', 'yaml']);
    expect(yaml).toContain('id: mariner-demo');
  });

  it('chat -m streams an answer to stdout; -o json gives it whole with its usage; models list --watch sees the runtime start', async () => {
    // Watching from before the first request: the demo model's runtime appears as the request starts it.
    const watch = spawn(process.execPath, ['--import', TSX, path.join(ROOT, 'bin/mariner.ts'), 'models', 'list', '--watch', '-o', 'json'], { cwd: home, env });
    const states: { id: string; runtimes: { readyReplicas: number }[] }[][] = [];
    createInterface({ input: watch.stdout }).on('line', (line) => states.push((JSON.parse(line) as { items: (typeof states)[number] }).items));
    const demoReady = (items: (typeof states)[number]) => items.find((m) => m.id === 'mariner-demo')?.runtimes.some((r) => r.readyReplicas > 0) ?? false;
    await until(() => states.length > 0, 'the first watched state');
    expect(demoReady(states[0]!)).toBe(false);
    const answer = await json(['chat', 'mariner-demo', '-m', 'Say something.', '--max-tokens', '8']);
    expect(answer).toMatchObject({
      model: 'mariner-demo',
      content: expect.any(String),
      finishReason: expect.any(String),
      usage: { completion_tokens: expect.any(Number) },
    });
    expect(answer.content.length).toBeGreaterThan(0);
    const streamed = await ok(['chat', 'mariner-demo', '-m', 'Say something.', '--max-tokens', '8']);
    expect(streamed.trim().length).toBeGreaterThan(0);
    const { items } = await json(['models', 'list']);
    expect(items.find((m: { id: string }) => m.id === 'mariner-demo').runtimes).toEqual([expect.objectContaining({ readyReplicas: 1 })]);
    await until(() => states.some(demoReady), 'the watch to show the runtime ready', 30_000);
    watch.kill('SIGINT');
    expect(await new Promise((resolve) => watch.once('exit', (code) => resolve(code)))).toBe(0);
  }, 60_000);

  it('keys create prints the secret once; the new key works on /v1/models; delete revokes it', async () => {
    const created = await json(['keys', 'create', 'cli-test']);
    expect(created.secret).toMatch(/^sk-/);
    const models = await fetch(`${t.url}/v1/models`, { headers: { authorization: `Bearer ${created.secret}` } });
    expect(models.status).toBe(200);
    const { items } = await json(['keys', 'list']);
    const listed = items.find((k: { id: string }) => k.id === created.id);
    expect(listed.secret).not.toBe(created.secret);
    expect(listed.secret).toBe(`${created.secret.slice(0, 5)}${listed.secret.slice(5, -2)}${created.secret.slice(-2)}`);
    await ok(['keys', 'delete', created.id]);
    expect((await fetch(`${t.url}/v1/models`, { headers: { authorization: `Bearer ${created.secret}` } })).status).toBe(401);
  }, 60_000);

  it('files create and download round-trip the bytes; another organization sees none of it', async () => {
    const bytes = randomBytes(3 << 20);
    writeFileSync(path.join(home, 'data.bin'), bytes);
    const file = await json(['files', 'create', 'data.bin', '--purpose', 'user_data']);
    expect(file).toMatchObject({ id: expect.stringMatching(/^file-/), filename: 'data.bin', bytes: bytes.length, purpose: 'user_data' });
    await ok(['files', 'download', file.id, '--out', 'copy.bin']);
    expect(readFileSync(path.join(home, 'copy.bin')).equals(bytes)).toBe(true);
    expect((await json(['files', 'list'])).items.map((f: { id: string }) => f.id)).toContain(file.id);

    // A member of another organization, logged in side by side as a second context (login makes it current).
    const first = new URL(t.url).host;
    const other = await projectWithKey(t, 'Other Org', { role: 'OWNER' });
    await ok(['login', '--url', t.url, '--api-key-stdin', '--name', 'other'], other.key);
    await ok(['context', 'use', first]);
    const asOther = (args: string[]) => cli(['--context', 'other', ...args]);
    expect(JSON.parse((await asOther(['whoami', '-o', 'json'])).stdout).organization.id).toBe(other.organizationId);
    expect(JSON.parse((await asOther(['files', 'list', '-o', 'json'])).stdout).items).toEqual([]);
    const theirs = await asOther(['files', 'download', file.id, '--out', 'stolen.bin']);
    expect(theirs.code).toBe(1);
    expect(theirs.stderr).toContain('not found');
    expect((await asOther(['files', 'delete', file.id])).code).toBe(1);
    // The other context's key cannot be pointed at the first organization's project.
    const projectId = (await json(['whoami'])).project.id;
    const moved = await asOther(['context', 'set', '--project', projectId]);
    expect(moved.code).toBe(1);
    expect(moved.stderr).toContain(`bound to project ${other.projectId}`);
    // The file is untouched.
    await ok(['files', 'delete', file.id]);
  }, 90_000);

  it('fine-tuning jobs logs -f follows a job live and resumes after a dropped connection with no line missed or repeated', async () => {
    const examples = Array.from({ length: 10 }, (_, i) =>
      JSON.stringify({
        messages: [
          { role: 'user', content: `q${i}` },
          { role: 'assistant', content: `a${i}` },
        ],
      }),
    );
    writeFileSync(path.join(home, 'train.jsonl'), `${examples.join('\n')}\n`);
    const fileId = (await ok(['files', 'create', 'train.jsonl', '--purpose', 'fine-tune', '-o', 'id'])).trim();
    const job = await json(['fine-tuning', 'jobs', 'create', '--model', 'mariner-demo-base', '--training-file', fileId, '--suffix', 'cli', '--epochs', '8']);
    expect(job).toMatchObject({ id: expect.stringMatching(/^ftjob-/), status: 'QUEUED' });
    const relay = await droppingRelay(new URL(t.url));
    try {
      const following = runCli({ ...env, MARINER_URL: relay.url, MARINER_API_KEY: t.adminKey }, ['fine-tuning', 'jobs', 'logs', job.id, '-f', '-o', 'json']);
      // Cut the connection once some lines went through, while the job still runs.
      const deadline = Date.now() + 30_000;
      while (relay.bytesToClient() < 600 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      relay.drop();
      const result = await following;
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toMatch(/connection to .* lost .*; resuming at line \d+/);
      const { lines } = JSON.parse(result.stdout) as { lines: { offset: number; text: string }[] };
      const all = (await json(['fine-tuning', 'jobs', 'logs', job.id])).lines;
      expect(lines.map((l) => l.offset)).toEqual(all.map((_: unknown, i: number) => i));
      expect(lines).toEqual(all);
      expect(lines.at(-1)!.text).toContain('summary');
    } finally {
      await relay.close();
    }
    expect((await json(['fine-tuning', 'jobs', 'get', job.id])).status).toBe('SUCCEEDED');
  }, 90_000);

  it('kubeconfig writes an owner-only kubectl context pointing at /v1/sessions/<cluster id> with the key as bearer token', async () => {
    const [cluster] = (await json(['clusters', 'list'])).items;
    expect(cluster).toMatchObject({ name: 'default', connected: true });
    const file = path.join(home, 'kube', 'config');
    await ok(['kubeconfig', 'default', '--kubeconfig', file, '--namespace', 'team-a']);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const config = YAML.parse(readFileSync(file, 'utf8'));
    expect(config['current-context']).toBe('mariner-default');
    expect(config.clusters).toEqual([{ name: 'mariner-default', cluster: { server: `${t.url}/v1/sessions/${cluster.id}` } }]);
    expect(config.users).toEqual([{ name: 'mariner-default', user: { token: t.adminKey } }]);
    expect(config.contexts).toEqual([{ name: 'mariner-default', context: { cluster: 'mariner-default', user: 'mariner-default', namespace: 'team-a' } }]);
  });

  it('bash completion offers the commands, subcommands and options', () => {
    const bin = path.join(home, 'bin');
    mkdirSync(bin, { recursive: true });
    writeFileSync(path.join(bin, 'mariner'), `#!/bin/sh\nexec '${process.execPath}' --import '${TSX}' '${path.join(ROOT, 'bin/mariner.ts')}' "$@"\n`);
    chmodSync(path.join(bin, 'mariner'), 0o755);
    const complete = (line: string) =>
      execFileSync(
        'bash',
        [
          '-c',
          `source <(mariner completion bash); COMP_WORDS=(${line}); COMP_CWORD=$((\${#COMP_WORDS[@]}-1)); _mariner_complete; printf '%s\\n' "\${COMPREPLY[@]}"`,
        ],
        {
          env: { ...env, PATH: `${bin}:${env['PATH']}` },
          encoding: 'utf8',
        },
      )
        .split('\n')
        .filter(Boolean);
    expect(complete('mariner mo')).toEqual(['models']);
    expect(complete("mariner fine-tuning jobs ''")).toEqual(['create', 'list', 'get', 'cancel', 'logs']);
    expect(complete('mariner chat --m')).toEqual(['--max-tokens', '--message']);
  });

  it('the command line reaches the platform through its public API only: bin/cli imports no module of the platform', () => {
    const dir = path.join(ROOT, 'bin/cli');
    const files = readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
    expect(files.length).toBeGreaterThan(5);
    for (const file of files) {
      const { importedFiles } = ts.preProcessFile(readFileSync(path.join(dir, file), 'utf8'), true, true);
      for (const { fileName } of importedFiles.filter((i) => i.fileName.startsWith('.'))) {
        const target = path.resolve(path.dirname(path.join(dir, file)), fileName);
        expect(target.startsWith(`${dir}${path.sep}`), `${file} imports ${fileName}`).toBe(true);
      }
    }
  });

  describe('in a terminal (tmux)', () => {
    it('login asks for the key without echoing it', async () => {
      const { env: freshEnv } = cliHome();
      const term = tmuxSession(cliCommand(freshEnv, `login --url ${t.url}`));
      try {
        await screenShows(term.screen, (s) => s.includes('API key'), 'the key prompt');
        term.text(t.adminKey);
        term.keys('Enter');
        const screen = await screenShows(term.screen, (s) => s.includes('[exited'), 'login to finish');
        expect(screen).toContain('Logged in to');
        expect(screen).toContain('[exited 0]');
        expect(screen).not.toContain(t.adminKey);
        expect(screen).not.toContain(t.adminKey.slice(3, 20));
      } finally {
        term.close();
      }
    });

    it('files create shows a progress bar on a terminal, and the file arrives', async () => {
      writeFileSync(path.join(home, 'bar.bin'), randomBytes(8 << 20));
      const term = tmuxSession(`cd '${home}' && ${cliCommand(env, `files create '${path.join(home, 'bar.bin')}' --purpose user_data`)}`);
      try {
        const screen = await screenShows(term.screen, (s) => s.includes('[exited'), 'the upload to finish');
        expect(screen).toContain('[exited 0]');
        expect(screen).toMatch(/Uploading \[█+\] 100% \| 8388608\/8388608 bytes/);
        expect(screen).toMatch(/File file-\S+ uploaded \(bar\.bin, 8388608 bytes, user_data\)/);
      } finally {
        term.close();
      }
    });

    it('chat: a prompt gets a streamed answer; Ctrl-C cancels an answer and keeps the session; Ctrl-D exits', async () => {
      const term = tmuxSession(cliCommand(env, 'chat mariner-demo --max-tokens 3000'));
      try {
        await screenShows(term.screen, (s) => s.includes('Ctrl-D exits') && /^> $/m.test(s), 'the chat prompt');
        term.text('Tell me a long story.');
        term.keys('Enter');
        // The answer streams in: text after the prompt line, growing.
        const answering = (s: string) => (s.split('> Tell me a long story.')[1] ?? '').replace(/\s/g, '').length > 20;
        await screenShows(term.screen, answering, 'the answer to stream in');
        term.keys('C-c');
        await screenShows(term.screen, (s) => s.includes('(answer cancelled)'), 'the answer to be cancelled');
        await screenShows(term.screen, (s) => /\(answer cancelled\)\n> $/m.test(s.trimEnd() + ' '), 'the prompt to come back');
        // The session goes on: a second prompt is answered.
        term.text('And another.');
        term.keys('Enter');
        await screenShows(term.screen, (s) => (s.split('> And another.')[1] ?? '').replace(/\s/g, '').length > 5, 'the second answer');
        term.keys('C-c');
        await screenShows(term.screen, (s) => s.split('> And another.')[1]?.includes('(answer cancelled)') ?? false, 'the second cancel');
        expect(term.screen()).not.toContain('[exited');
        term.keys('C-d');
        const screen = await screenShows(term.screen, (s) => s.includes('[exited'), 'chat to exit');
        expect(screen).toContain('[exited 0]');
      } finally {
        term.close();
      }
    }, 60_000);
  });
});
