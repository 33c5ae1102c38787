import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cliHome, ROOT, screenShows, tmuxSession, TSX } from './cliProcess.js';

/** The shells, where this machine has them (CI installs zsh and fish; a machine without one skips its tests). */
const which = (shell: string) => ['/usr/bin', '/bin', '/usr/local/bin'].map((dir) => path.join(dir, shell)).find((file) => existsSync(file));
const ZSH = which('zsh');
const FISH = which('fish');

/**
 * Issue 19: `mariner completion zsh|fish` loaded into the real shells, which then offer `mariner`'s
 * commands: zsh's completion system in an interactive zsh in a terminal (tmux), with its candidates also
 * captured exactly through `compadd`; fish through its own `complete -C`.
 */
describe('shell completion in zsh and fish', () => {
  let home: string;
  let env: NodeJS.ProcessEnv;
  let bin: string;

  beforeAll(() => {
    ({ home, env } = cliHome());
    // `mariner` on the PATH, as an installed one is.
    bin = path.join(home, 'bin');
    mkdirSync(bin, { recursive: true });
    writeFileSync(path.join(bin, 'mariner'), `#!/bin/sh\nexec '${process.execPath}' --import '${TSX}' '${path.join(ROOT, 'bin/mariner.ts')}' "$@"\n`);
    chmodSync(path.join(bin, 'mariner'), 0o755);
    env = { ...env, PATH: `${bin}:${env['PATH']}` };
  });

  describe.skipIf(!ZSH)('zsh', () => {
    /** The candidates the script hands zsh's `compadd` for a command line (the last word being completed). */
    const candidates = (...words: string[]) =>
      execFileSync(
        ZSH!,
        [
          '-f',
          '-c',
          // compdef and compadd are the completion system's: here stand-ins that record what the script gives them.
          `compdef() { print -r -- "compdef $*" >&2 }
           compadd() { if [[ $1 == -a ]]; then print -rl -- "\${(@P)2}"; else print -rl -- "$@"; fi }
           source <(mariner completion zsh)
           words=(mariner ${words.map((w) => `'${w}'`).join(' ')}); CURRENT=\${#words}
           _mariner_complete`,
        ],
        { env, encoding: 'utf8' },
      )
        .split('\n')
        .filter(Boolean);

    it('the script registers itself for mariner and offers commands, subcommands and options', () => {
      const registered = execFileSync(ZSH!, ['-f', '-c', 'compdef() { print -r -- "compdef $*" }; source <(mariner completion zsh)'], {
        env,
        encoding: 'utf8',
      });
      expect(registered.trim()).toBe('compdef _mariner_complete mariner');
      expect(candidates('mo')).toEqual(['models']);
      expect(candidates('ve')).toEqual(['vector-stores']);
      expect(candidates('batch', 'jobs', '')).toEqual(['create', 'list', 'get', 'cancel', 'delete', 'exec', 'logs']);
      expect(candidates('notebooks', 'o')).toEqual(['open']);
      expect(candidates('chat', '--m')).toEqual(['--max-tokens', '--message']);
    }, 240_000);

    it('in an interactive zsh with compinit, Tab completes `mariner mo` to `mariner models` and lists subcommands', async () => {
      const zdot = path.join(home, 'zdot');
      mkdirSync(zdot, { recursive: true });
      writeFileSync(path.join(zdot, '.zshrc'), `autoload -U compinit && compinit -u -D\nsource <(mariner completion zsh)\nPS1='zsh%% '\n`);
      const vars = Object.entries({ ...env, ZDOTDIR: zdot })
        .map(([k, v]) => `${k}='${v}'`)
        .join(' ');
      const term = tmuxSession(`env -i ${vars} ${ZSH} -i`);
      try {
        await screenShows(term.screen, (s) => /^zsh% $/m.test(s), 'the zsh prompt', 90_000);
        term.text('mariner mo');
        term.keys('Tab');
        await screenShows(term.screen, (s) => /^zsh% mariner models\s*$/m.test(s), 'zsh to complete the command', 90_000);
        term.keys('C-u');
        term.text('mariner notebooks ');
        term.keys('Tab');
        const screen = await screenShows(term.screen, (s) => /^zsh% mariner notebooks *\n\S/m.test(s), 'the subcommands listed', 90_000);
        // zsh lists them below the line, sorted.
        const listed = /^zsh% mariner notebooks *\n(.*)$/m.exec(screen)![1]!.trim().split(/\s+/);
        expect(listed).toEqual(['create', 'delete', 'get', 'list', 'open', 'start', 'stop']);
      } finally {
        term.close();
      }
    }, 300_000);
  });

  describe.skipIf(!FISH)('fish', () => {
    /** What fish offers for a command line, through its own completion engine (`complete -C`). */
    const complete = (line: string) =>
      execFileSync(FISH!, ['--no-config', '-c', `mariner completion fish | source; complete -C '${line}'`], { env: { ...env, HOME: home }, encoding: 'utf8' })
        .split('\n')
        .filter(Boolean);

    it('offers commands, subcommands and options', () => {
      expect(complete('mariner mo')).toEqual(['models']);
      expect(complete('mariner vector-stores files ').sort()).toEqual(['add', 'list', 'remove']);
      expect(complete('mariner batches ').sort()).toEqual(['cancel', 'create', 'get', 'list']);
      expect(complete('mariner chat --m')).toEqual(['--max-tokens', '--message']);
    }, 240_000);
  });
});
