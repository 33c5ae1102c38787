import { Command, CommanderError, Option } from 'commander';
import { CliError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './errors.js';
import { OUTPUT_FORMATS } from './output.js';
import { registerAuth } from './commands/auth.js';
import { registerContext } from './commands/context.js';
import { registerModels } from './commands/models.js';
import { registerChat } from './commands/chat.js';
import { registerKeys } from './commands/keys.js';
import { registerOrganizations } from './commands/orgs.js';
import { registerMembers } from './commands/members.js';
import { registerFiles } from './commands/files.js';
import { registerFineTuning } from './commands/fineTuning.js';
import { registerBatch } from './commands/batch.js';
import { registerVectorStores } from './commands/vectorStores.js';
import { registerNotebooks } from './commands/notebooks.js';
import { registerClusters } from './commands/clusters.js';
import { registerUsage } from './commands/usage.js';
import { registerCompletion } from './commands/completion.js';

/**
 * The everyday commands of `mariner` (docs/cli.md): bin/mariner.ts sends every command named here to
 * runCli, and keeps `up`, `serve` and `agent` itself.
 */
export const CLI_COMMANDS: readonly string[] = [
  'login',
  'logout',
  'whoami',
  'context',
  'models',
  'chat',
  'keys',
  'orgs',
  'members',
  'projects',
  'files',
  'fine-tuning',
  'batch',
  'batches',
  'notebooks',
  'vector-stores',
  'clusters',
  'kubeconfig',
  'usage',
  'completion',
  '__complete',
];

/** Global options that take a value: `mariner --context prod models list`. */
const VALUE_OPTIONS = new Set(['--context', '-o', '--output']);

/** The command a command line names: its first word that is neither a global option nor an option's value. */
export function commandOf(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (VALUE_OPTIONS.has(word)) i++;
    else if (!word.startsWith('-')) return word;
  }
  return undefined;
}

export function buildProgram(): Command {
  const program = new Command('mariner')
    .description('Mariner from a terminal: log in, pick a project, and work with models, chat, keys, files, jobs and clusters')
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text), writeOut: (text) => process.stdout.write(text) })
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .addOption(new Option('-o, --output <format>', 'output format').choices(OUTPUT_FORMATS).default('table'))
    .option('--context <name>', 'the saved context to use (default: $MARINER_URL + $MARINER_API_KEY, else the current one)')
    .addHelpText(
      'after',
      `
Exit codes: 0 success; 1 the platform refused or failed, or not logged in (the reason on stderr);
2 bad arguments (unknown command or option, missing or malformed value).`,
    );
  registerAuth(program);
  registerContext(program);
  registerModels(program);
  registerChat(program);
  registerKeys(program);
  registerOrganizations(program);
  registerMembers(program);
  registerFiles(program);
  registerFineTuning(program);
  registerBatch(program);
  registerNotebooks(program);
  registerVectorStores(program);
  registerClusters(program);
  registerUsage(program);
  registerCompletion(program);
  return program;
}

/** Runs one command line (without the `mariner`); resolves to its exit code. Errors go to stderr. */
export async function runCli(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT_OK;
  } catch (error) {
    if (error instanceof CommanderError) {
      // commander printed its message (or the help) already.
      // --help and `help` exit 0; the help shown for a command missing its subcommand, like every other usage error, 2.
      return error.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    if (error instanceof CliError) {
      process.stderr.write(`mariner: ${error.message}\n`);
      return error.exitCode;
    }
    if ((error as { name?: string }).name === 'ExitPromptError') {
      process.stderr.write('mariner: cancelled\n');
      return EXIT_FAILURE;
    }
    process.stderr.write(`mariner: ${(error as Error).stack ?? String(error)}\n`);
    return EXIT_FAILURE;
  }
}
