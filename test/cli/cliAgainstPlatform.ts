import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { projectWithKey } from '../support/tenants.js';
import { cliHome, runCli, type CliResult } from './cliProcess.js';

/** A person running `mariner` against a whole platform, as its admin or as the owner of another organization. */
export interface CliAgainstPlatform {
  /** The platform (once the describe's beforeAll ran). */
  readonly t: TestPlatform;
  /** The person's home, where commands run: a file given by name is read from here. */
  readonly home: string;
  /** The owner of another organization, with a key of their own project. */
  readonly other: { key: string; projectId: string; organizationId: string };
  /** `mariner ARGS` as a child process, with the admin key or `key`. */
  cli(args: string[], key?: string): Promise<CliResult>;
  /** The same, as the owner of the other organization. */
  asOther(args: string[]): Promise<CliResult>;
  /** Its output; a non-zero exit fails the test with its stderr. */
  ok(args: string[], key?: string): Promise<string>;
  /** Its `-o json` output, parsed. */
  json<T = any>(args: string[], key?: string): Promise<T>;
  /** Writes a file into the home; returns its name. */
  file(name: string, text: string): string;
}

/**
 * The CLI tests' setup, for the describe it is called in: its beforeAll starts a platform with `options`,
 * a home of the person's own (test/cli/cliProcess.ts) and the other organization's owner; its afterAll
 * stops the platform and removes the home.
 */
export function cliAgainstPlatform(options: Parameters<typeof startTestPlatform>[0]): CliAgainstPlatform {
  let started: { t: TestPlatform; home: string; env: NodeJS.ProcessEnv; other: CliAgainstPlatform['other'] } | undefined;
  const now = () => started ?? fail('the platform starts in the beforeAll of the describe that called cliAgainstPlatform');
  beforeAll(async () => {
    const t = await startTestPlatform(options);
    const { home, env } = cliHome();
    try {
      started = { t, home, env, other: await projectWithKey(t, 'Other Org', { role: 'OWNER' }) };
    } catch (error) {
      await t.close();
      rmSync(home, { recursive: true, force: true });
      throw error;
    }
  }, 60_000);
  afterAll(async () => {
    await started?.t.close();
    if (started) rmSync(started.home, { recursive: true, force: true });
  });
  const cli = (args: string[], key?: string): Promise<CliResult> => {
    const { t, env, home } = now();
    return runCli({ ...env, MARINER_URL: t.url, MARINER_API_KEY: key ?? t.adminKey }, args, { cwd: home });
  };
  const ok = async (args: string[], key?: string): Promise<string> => {
    const result = await cli(args, key);
    if (result.code !== 0) throw new Error(`mariner ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
    return result.stdout;
  };
  return {
    get t() {
      return now().t;
    },
    get home() {
      return now().home;
    },
    get other() {
      return now().other;
    },
    cli,
    asOther: (args) => cli(args, now().other.key),
    ok,
    json: async <T = any>(args: string[], key?: string): Promise<T> => JSON.parse(await ok([...args, '-o', 'json'], key)) as T,
    file(name, text) {
      writeFileSync(path.join(now().home, name), text);
      return name;
    },
  };
}

function fail(message: string): never {
  throw new Error(message);
}
