import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: the CLI runs from sources there (`node --import tsx bin/mariner.ts`), as `npm run dev` does. */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** tsx's loader by its full URL: the CLI runs in the user's own directories, where no node_modules is. */
export const TSX = import.meta.resolve('tsx');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * A person's terminal environment: a home and config dir of their own (nothing of the machine's user),
 * no MARINER_URL/MARINER_API_KEY unless a test gives them. Credentials go to the config file: a login here
 * never reaches the machine's own keychain (a developer's desktop has one); test/cli/keychain.test.ts
 * gives its runs a keyring of their own.
 */
export function cliHome(): { home: string; env: NodeJS.ProcessEnv } {
  const home = mkdtempSync(path.join(tmpdir(), 'mariner-cli-home-'));
  const env: NodeJS.ProcessEnv = {
    PATH: process.env['PATH'],
    HOME: home,
    XDG_CONFIG_HOME: path.join(home, '.config'),
    LANG: 'C.UTF-8',
    TERM: 'xterm-256color',
    MARINER_CREDENTIAL_STORE: 'file',
  };
  return { home, env };
}

/** Runs `mariner ARGS` as a child process; `input` is written to its stdin (then closed). */
export function runCli(env: NodeJS.ProcessEnv, args: string[], options: { input?: string; cwd?: string } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      process.execPath,
      ['--import', TSX, path.join(ROOT, 'bin/mariner.ts'), ...args],
      { cwd: options.cwd ?? ROOT, env, maxBuffer: 64 << 20, timeout: 120_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
        if (code === null) reject(error);
        else
          resolve({
            code,
            stdout,
            stderr: stderr
              .split('\n')
              .filter((line) => !line.includes('end of life'))
              .join('\n'),
          });
      },
    );
    child.stdin!.end(options.input ?? '');
  });
}

/** The command line that runs the CLI from sources in a shell (for tmux). */
export function cliCommand(env: NodeJS.ProcessEnv, args: string): string {
  const vars = Object.entries(env)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}='${v}'`)
    .join(' ');
  return `cd '${ROOT}' && env -i ${vars} '${process.execPath}' --import '${TSX}' bin/mariner.ts ${args}`;
}

const TMUX = existsSync('/usr/bin/tmux') ? '/usr/bin/tmux' : 'tmux';

/** A tmux session of its own (its own server socket), 120×40, running `command`; the pane stays after it exits. */
export function tmuxSession(command: string) {
  const socket = path.join(mkdtempSync(path.join(tmpdir(), 'mariner-tmux-')), 'socket');
  const tmux = (...args: string[]) => execFileSync(TMUX, ['-S', socket, ...args], { encoding: 'utf8' });
  tmux('new-session', '-d', '-x', '120', '-y', '40', '-s', 'cli', `${command}; echo "[exited $?]"; sleep 600`);
  return {
    /** The visible screen and its scrollback. */
    screen: () => tmux('capture-pane', '-p', '-J', '-S', '-200', '-t', 'cli'),
    /** tmux key names (`C-c`, `Enter`) or text (`-l`). */
    keys: (...keys: string[]) => void tmux('send-keys', '-t', 'cli', ...keys),
    text: (text: string) => void tmux('send-keys', '-t', 'cli', '-l', text),
    /** Resizes the window, as a person dragging the terminal's edge (the program gets SIGWINCH). */
    resize: (columns: number, rows: number) => void tmux('resize-window', '-t', 'cli', '-x', String(columns), '-y', String(rows)),
    close: () => {
      try {
        tmux('kill-server');
      } catch {
        // already gone
      }
    },
  };
}

/** Waits until the screen shows what `condition` looks for (the screen changes without an event to await). */
export async function screenShows(screen: () => string, condition: (text: string) => boolean, what: string, timeoutMs = 30_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = screen();
    if (condition(text)) return text;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; the screen:\n${text}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
