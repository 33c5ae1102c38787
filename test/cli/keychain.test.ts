import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { projectWithKey } from '../support/tenants.js';
import { until } from '../support/until.js';
import { cliHome, runCli, type CliResult } from './cliProcess.js';

function installed(tool: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const TOOLS = ['dbus-daemon', 'dbus-send', 'gnome-keyring-daemon', 'secret-tool'];
const missingTools = process.platform === 'linux' ? TOOLS.filter((tool) => !installed(tool)) : TOOLS;

/**
 * A D-Bus session bus of the test's own, with an unlocked GNOME Keyring on it (the freedesktop Secret
 * Service a Linux desktop has): its home, data and runtime dirs in a temporary folder, so nothing of the
 * machine's own keyring is read or written. The bus activates no service (its config names no service
 * dirs): only the keyring started here answers.
 */
async function startKeyring(): Promise<{ address: string; env: NodeJS.ProcessEnv; close(): void }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'mariner-keyring-'));
  mkdirSync(path.join(dir, 'run'), { mode: 0o700 });
  const busConfig = path.join(dir, 'bus.conf');
  writeFileSync(
    busConfig,
    `<busconfig><type>session</type><listen>unix:dir=${dir}</listen><auth>EXTERNAL</auth>` +
      '<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy></busconfig>\n',
  );
  const base: NodeJS.ProcessEnv = {
    PATH: process.env['PATH'],
    HOME: dir,
    XDG_RUNTIME_DIR: path.join(dir, 'run'),
    XDG_DATA_HOME: path.join(dir, 'data'),
    XDG_CONFIG_HOME: path.join(dir, 'config'),
    XDG_CACHE_HOME: path.join(dir, 'cache'),
  };
  const children: ChildProcess[] = [];
  const close = () => {
    for (const child of children.reverse()) if (child.exitCode === null) child.kill();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const bus = spawn('dbus-daemon', [`--config-file=${busConfig}`, '--nofork', '--print-address=1'], { env: base, stdio: ['ignore', 'pipe', 'ignore'] });
    children.push(bus);
    const { value: address } = await createInterface({ input: bus.stdout! })[Symbol.asyncIterator]().next();
    if (typeof address !== 'string' || !address.startsWith('unix:')) throw new Error(`dbus-daemon printed no address (exit ${bus.exitCode})`);
    const env = { ...base, DBUS_SESSION_BUS_ADDRESS: address };
    // --unlock: the password on stdin creates the login keyring and unlocks it (no prompt, which a test has no display for).
    const keyring = spawn('gnome-keyring-daemon', ['--foreground', '--unlock', '--components=secrets'], { env, stdio: ['pipe', 'ignore', 'ignore'] });
    children.push(keyring);
    keyring.stdin!.end('test-keyring-password');
    const hasOwner = () =>
      execFileSync(
        'dbus-send',
        [
          '--session',
          '--print-reply',
          '--dest=org.freedesktop.DBus',
          '/org/freedesktop/DBus',
          'org.freedesktop.DBus.NameHasOwner',
          'string:org.freedesktop.secrets',
        ],
        { env, encoding: 'utf8' },
      ).includes('boolean true');
    await until(() => keyring.exitCode === null && hasOwner(), 'gnome-keyring-daemon on the test bus', 20_000);
    return { address, env, close };
  } catch (error) {
    close();
    throw error;
  }
}

/**
 * Issue 19: the command line keeps credentials in the OS keychain when there is one (here the Secret
 * Service of a real GNOME Keyring on a D-Bus session bus), else in the owner-only config file; each
 * command reads the secret from where its context says, and logout deletes it there.
 */
describe.skipIf(missingTools.length > 0)(
  `credentials in the OS keychain${missingTools.length ? ` (skipped: ${process.platform === 'linux' ? `${missingTools.join(', ')} not installed` : 'the Secret Service test runs on Linux'})` : ''}`,
  () => {
    let t: TestPlatform;
    let keyring: Awaited<ReturnType<typeof startKeyring>>;

    /** A terminal of a desktop session: the test's bus in the environment, the default setting (no MARINER_CREDENTIAL_STORE). */
    function desktopHome(): { home: string; env: NodeJS.ProcessEnv; file: string } {
      const { home, env } = cliHome();
      delete env['MARINER_CREDENTIAL_STORE'];
      return { home, env: { ...env, DBUS_SESSION_BUS_ADDRESS: keyring.address }, file: path.join(home, '.config', 'mariner', 'config.yaml') };
    }
    /** The same user without a D-Bus session (an SSH login, a container): no keychain. */
    const headless = (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv => {
      const { DBUS_SESSION_BUS_ADDRESS: _bus, ...rest } = env;
      return rest;
    };
    const cli = (env: NodeJS.ProcessEnv, args: string[], input?: string): Promise<CliResult> =>
      runCli(env, args, { ...(input !== undefined ? { input } : {}), cwd: env['HOME']! });
    const ok = async (env: NodeJS.ProcessEnv, args: string[], input?: string): Promise<string> => {
      const result = await cli(env, args, input);
      if (result.code !== 0) throw new Error(`mariner ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
      return result.stdout;
    };
    /** What `secret-tool lookup` finds in the keyring for a context (null: no entry). */
    const lookup = (name: string): string | null => {
      try {
        return execFileSync('secret-tool', ['lookup', 'service', 'mariner', 'username', `${name} (${t.url})`], { env: keyring.env, encoding: 'utf8' });
      } catch {
        return null;
      }
    };

    beforeAll(async () => {
      [t, keyring] = await Promise.all([startTestPlatform(), startKeyring()]);
    }, 60_000);
    afterAll(async () => {
      keyring?.close();
      await t?.close();
    });

    it('login keeps the key in the keychain and not in the file; every command reads it from there; logout deletes it', async () => {
      const { env, file } = desktopHome();
      const out = await ok(env, ['login', '--url', t.url, '--api-key-stdin', '--name', 'desk'], `${t.adminKey}\n`);
      expect(out).toContain('Logged in to');
      expect(out).toContain(`Credentials saved in the OS keychain (service "mariner", account "desk (${t.url})")`);
      const text = readFileSync(file, 'utf8');
      expect(text).not.toContain(t.adminKey);
      expect(text).toContain('credential-store: keychain');
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(lookup('desk')).toBe(t.adminKey);

      expect(JSON.parse(await ok(env, ['whoami', '-o', 'json']))).toMatchObject({ context: 'desk', user: 'admin@example.com' });
      expect(JSON.parse(await ok(env, ['models', 'list', '-o', 'json'])).items).toEqual(expect.any(Array));
      expect(JSON.parse(await ok(env, ['context', 'list', '-o', 'json'])).items).toEqual([
        expect.objectContaining({ name: 'desk', current: true, apiKey: null, credentialStore: 'keychain' }),
      ]);
      // `context set` checks with the keychain's key and saves the choice, still without the key in the file.
      await ok(env, ['context', 'set', '--clear']);
      expect(readFileSync(file, 'utf8')).not.toContain(t.adminKey);
      expect(lookup('desk')).toBe(t.adminKey);

      expect(await ok(env, ['logout'])).toContain('Logged out of "desk"');
      expect(lookup('desk')).toBeNull();
      const after = await cli(env, ['whoami']);
      expect(after.code).toBe(1);
      expect(after.stderr).toContain('not logged in');
    });

    it('two contexts side by side keep one entry each: switching uses the right key, logging out of one leaves the other', async () => {
      const { env } = desktopHome();
      const other = await projectWithKey(t, 'Keychain Org', { role: 'OWNER' });
      await ok(env, ['login', '--url', t.url, '--api-key-stdin', '--name', 'admin'], t.adminKey);
      await ok(env, ['login', '--url', t.url, '--api-key-stdin', '--name', 'team'], other.key);
      expect([lookup('admin'), lookup('team')]).toEqual([t.adminKey, other.key]);

      expect(JSON.parse(await ok(env, ['whoami', '-o', 'json'])).organization.id).toBe(other.organizationId);
      expect(JSON.parse(await ok(env, ['--context', 'admin', 'whoami', '-o', 'json'])).user).toBe('admin@example.com');
      await ok(env, ['context', 'use', 'admin']);
      expect(JSON.parse(await ok(env, ['whoami', '-o', 'json'])).user).toBe('admin@example.com');

      await ok(env, ['logout', '--name', 'team']);
      expect([lookup('admin'), lookup('team')]).toEqual([t.adminKey, null]);
      expect(JSON.parse(await ok(env, ['whoami', '-o', 'json'])).user).toBe('admin@example.com');
      await ok(env, ['logout', '--all']);
      expect(lookup('admin')).toBeNull();
    });

    it('a keychain entry that is gone, or a keychain out of reach, says to log in again; the environment key still works', async () => {
      const { env } = desktopHome();
      await ok(env, ['login', '--url', t.url, '--api-key-stdin', '--name', 'gone'], t.adminKey);

      // The same context from a shell without the D-Bus session (an SSH login to the same machine).
      const unreachable = await cli(headless(env), ['whoami']);
      expect(unreachable.code).toBe(1);
      expect(unreachable.stderr).toContain('context "gone" keeps its credential in the OS keychain, which cannot be reached here');
      expect(unreachable.stderr).toContain('mariner login');
      expect(unreachable.stderr).not.toMatch(/\n\s+at /);
      // MARINER_URL + MARINER_API_KEY stand for a context there, as before: no keychain read.
      const viaEnv = await ok({ ...headless(env), MARINER_URL: t.url, MARINER_API_KEY: t.adminKey }, ['whoami', '-o', 'json']);
      expect(JSON.parse(viaEnv)).toMatchObject({ context: '(environment)', user: 'admin@example.com' });

      // The entry deleted behind the command line's back (a keychain app, `secret-tool clear`).
      execFileSync('secret-tool', ['clear', 'service', 'mariner', 'username', `gone (${t.url})`], { env: keyring.env });
      const gone = await cli(env, ['whoami']);
      expect(gone.code).toBe(1);
      expect(gone.stderr).toContain(
        `the credential of context "gone" is no longer in the OS keychain (service "mariner", account "gone (${t.url})"): run \`mariner login\` again`,
      );
      expect(gone.stderr).not.toMatch(/\n\s+at /);
      // Logging in again puts it back.
      await ok(env, ['login', '--api-key-stdin', '--name', 'gone'], t.adminKey);
      expect(JSON.parse(await ok(env, ['whoami', '-o', 'json'])).context).toBe('gone');
      await ok(env, ['logout']);
    });

    it('without a D-Bus session login falls back to the owner-only file and says where the key went', async () => {
      const { env, file } = desktopHome();
      const out = await ok(headless(env), ['login', '--url', t.url, '--api-key-stdin'], t.adminKey);
      expect(out).toContain(`Credentials saved in ${file} (mode 0600)`);
      expect(out).not.toContain('keychain');
      expect(readFileSync(file, 'utf8')).toContain(`api-key: ${t.adminKey}`);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      // The file context works where the bus is too: each read follows the context, not the machine.
      expect(JSON.parse(await ok(env, ['whoami', '-o', 'json'])).user).toBe('admin@example.com');
      expect(lookup(new URL(t.url).host)).toBeNull();
    });

    it('a forced keychain without one is an error and nothing is written; a forced file skips the keychain', async () => {
      const { env, file } = desktopHome();
      for (const forced of [
        { env: { ...headless(env), MARINER_CREDENTIAL_STORE: 'keychain' }, args: [] },
        { env: headless(env), args: ['--credential-store', 'keychain'] },
      ]) {
        const result = await cli(forced.env, ['login', '--url', t.url, '--api-key-stdin', ...forced.args], t.adminKey);
        expect(result.code).toBe(1);
        expect(result.stderr).toContain('the OS keychain was asked for');
        expect(result.stderr).toContain('nothing was saved');
        expect(existsSync(file)).toBe(false);
      }
      const bad = await cli(env, ['login', '--url', t.url, '--api-key-stdin', '--credential-store', 'vault'], t.adminKey);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain('--credential-store must be keychain, file or auto, not "vault"');
      const badEnv = await cli({ ...env, MARINER_CREDENTIAL_STORE: 'vault' }, ['login', '--url', t.url, '--api-key-stdin'], t.adminKey);
      expect(badEnv.code).toBe(2);
      expect(badEnv.stderr).toContain('MARINER_CREDENTIAL_STORE must be keychain, file or auto');
      expect(existsSync(file)).toBe(false);

      // With the keychain there, `file` keeps the key in the file; moving the context between the two stores leaves no copy behind.
      const inFile = await ok({ ...env, MARINER_CREDENTIAL_STORE: 'file' }, ['login', '--url', t.url, '--api-key-stdin', '--name', 'moving'], t.adminKey);
      expect(inFile).toContain(`Credentials saved in ${file}`);
      expect(lookup('moving')).toBeNull();
      expect(readFileSync(file, 'utf8')).toContain(t.adminKey);
      await ok({ ...env, MARINER_CREDENTIAL_STORE: 'file' }, ['login', '--api-key-stdin', '--name', 'moving', '--credential-store', 'keychain'], t.adminKey);
      expect(readFileSync(file, 'utf8')).not.toContain(t.adminKey);
      expect(lookup('moving')).toBe(t.adminKey);
      await ok(env, ['login', '--api-key-stdin', '--name', 'moving', '--credential-store', 'file'], t.adminKey);
      expect(readFileSync(file, 'utf8')).toContain(t.adminKey);
      expect(lookup('moving')).toBeNull();
      expect(JSON.parse(await ok(env, ['whoami', '-o', 'json'])).context).toBe('moving');
    });
  },
);
