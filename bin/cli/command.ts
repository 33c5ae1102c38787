import type { Command } from 'commander';
import { createApiClient, type ApiClient } from './client.js';
import { loadConfig, resolveContext } from './config.js';
import { parseFormat, type OutputFormat } from './output.js';
import { UsageError } from './errors.js';

/**
 * What every command's action gets: the output format (`-o`), and the API client of the context it
 * runs in (`--context`, else MARINER_URL + MARINER_API_KEY, else the current context). The client is
 * opened on first use and closed after the action.
 */
export interface Invocation {
  format: OutputFormat;
  /** The global options (`--context`, `-o`) merged with the command's own. */
  options: Record<string, any>;
  client(): ApiClient;
}

export type Action = (invocation: Invocation, ...args: any[]) => Promise<void>;

/** Wraps an action: parses the global options, hands it the invocation, closes its client after. */
export function run(action: Action) {
  return async function (this: Command, ...args: unknown[]): Promise<void> {
    const command = this;
    const options = command.optsWithGlobals();
    let client: ApiClient | undefined;
    const invocation: Invocation = {
      format: parseFormat(options['output']),
      options,
      client: () => (client ??= createApiClient(resolveContext(loadConfig(), options['context']))),
    };
    try {
      // commander passes the positional arguments, then the options and the command: only the positionals go on.
      await action(invocation, ...args.slice(0, command.registeredArguments.length));
    } finally {
      await client?.close();
    }
  };
}

/** A whole number option in [min, max], or a UsageError naming the option. */
export function integerOption(name: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${name} must be a whole number between ${min} and ${max}, not "${value}"`);
    return n;
  };
}

/** Reads all of standard input as text. */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
