/**
 * Log lines on a terminal are readable; piped, they are JSON as before (issue 24, item 9), and
 * MARINER_LOG_FORMAT=json|pretty overrides either. A child process writes through createLogger with its
 * stdout a pipe, or a real terminal (util-linux `script` gives it a pseudo-terminal).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../lib/config.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TSX = fileURLToPath(new URL('../node_modules/.bin/tsx', import.meta.url));

/** Logs an info line with a component and a secret, then writes a banner line as `mariner up` does. */
const PROGRAM = `
import { createLogger } from './lib/logging.ts';
const logger = createLogger('info').child({ component: 'agent' });
logger.info({ transport: 'upgrade', apiKey: 'sk-leak' }, 'tunnel connected');
process.stdout.write('Mariner is up\\n');
logger.warn('after the banner');
`;

function childEnv(format?: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  delete env['MARINER_LOG_FORMAT'];
  if (format) env['MARINER_LOG_FORMAT'] = format;
  return env;
}

async function piped(format?: string): Promise<string[]> {
  const { stdout } = await run(TSX, ['-e', PROGRAM], { cwd: ROOT, env: childEnv(format) });
  return stdout.split('\n').filter((line) => line.trim() !== '');
}

/** The same program with its stdout a terminal; `script` copies what the terminal showed. */
async function onTerminal(format?: string): Promise<string[]> {
  const command = `${TSX} -e "${PROGRAM.replace(/"/g, '\\"').replace(/\$/g, '\\$')}"`;
  const { stdout } = await run('script', ['-qec', command, '/dev/null'], { cwd: ROOT, env: childEnv(format) });
  return stdout
    .replace(/\r/g, '')
    .split('\n')
    .filter((line) => line.trim() !== '' && !line.startsWith('mariner: warning'));
}

function isJson(line: string): boolean {
  try {
    return typeof JSON.parse(line) === 'object';
  } catch {
    return false;
  }
}

describe('log format', () => {
  it('writes JSON lines when stdout is piped, as log collectors and tests expect', async () => {
    const lines = await piped();
    expect(lines).toHaveLength(3);
    const first = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(first).toMatchObject({ level: 30, name: 'mariner', component: 'agent', msg: 'tunnel connected', transport: 'upgrade', apiKey: '[redacted]' });
    expect(lines[1]).toBe('Mariner is up');
    expect(JSON.parse(lines[2]!)).toMatchObject({ level: 40, msg: 'after the banner' });
  });

  it.runIf(existsSync('/usr/bin/script'))('writes readable lines on a terminal, in order with the banner, secrets still redacted', async () => {
    const lines = await onTerminal();
    expect(lines.join('\n')).not.toContain('\u001b['); // NO_COLOR is set
    expect(lines).toHaveLength(3);
    expect(lines.some(isJson)).toBe(false);
    expect(lines[0]).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: agent: tunnel connected .*"transport":"upgrade"/);
    expect(lines[0]).toContain('[redacted]');
    expect(lines[0]).not.toContain('sk-leak');
    expect(lines[1]).toBe('Mariner is up');
    expect(lines[2]).toMatch(/WARN: agent: after the banner$/);
  });

  it.runIf(existsSync('/usr/bin/script'))('MARINER_LOG_FORMAT=json keeps JSON on a terminal', async () => {
    const lines = await onTerminal('json');
    expect(lines.filter(isJson)).toHaveLength(2);
    expect(lines).toContain('Mariner is up');
  });

  it('MARINER_LOG_FORMAT=pretty writes readable lines into a pipe', async () => {
    const lines = await piped('pretty');
    expect(lines.some(isJson)).toBe(false);
    expect(lines[0]).toMatch(/INFO: agent: tunnel connected/);
  });

  it('a MARINER_LOG_FORMAT it does not know is refused by name', () => {
    expect(loadConfig({ MARINER_LOG_FORMAT: 'json' }).logFormat).toBe('json');
    expect(loadConfig({}).logFormat).toBe('auto');
    expect(() => loadConfig({ MARINER_LOG_FORMAT: 'yaml' })).toThrow(/MARINER_LOG_FORMAT must be auto, json or pretty, got "yaml"/);
  });
});
