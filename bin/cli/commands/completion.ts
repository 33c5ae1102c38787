import type { Command } from 'commander';
import { UsageError } from '../errors.js';

/** Commands bin/mariner.ts runs itself: completed at the top level too. */
const PLATFORM_COMMANDS = ['up', 'serve', 'agent'];

const SCRIPTS: Record<string, string> = {
  bash: `# mariner completion for bash: source <(mariner completion bash)
_mariner_complete() {
  local IFS=$'\\n'
  COMPREPLY=($(mariner __complete -- "\${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _mariner_complete mariner
`,
  zsh: `#compdef mariner
# mariner completion for zsh: source <(mariner completion zsh)
_mariner_complete() {
  local -a candidates
  candidates=("\${(@f)$(mariner __complete -- "\${(@)words[2,CURRENT]}" 2>/dev/null)}")
  compadd -a candidates
}
compdef _mariner_complete mariner
`,
  fish: `# mariner completion for fish: mariner completion fish | source
complete -c mariner -f -a '(mariner __complete -- (commandline -opc)[2..-1] (commandline -ct))'
`,
};

/**
 * The candidates for the last word of a command line (without `mariner`), from commander's own tree:
 * subcommands, or the options of the command reached (its own and the global ones) when the word starts with `-`.
 */
export function complete(program: Command, words: string[]): string[] {
  const prefix = words.at(-1) ?? '';
  let command = program;
  for (const word of words.slice(0, -1)) {
    const next = command.commands.find((c) => c.name() === word || c.aliases().includes(word));
    if (next) command = next;
  }
  if (prefix.startsWith('-')) {
    const options = [...command.options, ...(command === program ? [] : program.options)];
    return [...new Set(options.flatMap((o) => [o.long, o.short].filter((f): f is string => !!f)))].filter((f) => f.startsWith(prefix)).sort();
  }
  const names = command.commands.filter((c) => !c.name().startsWith('__')).map((c) => c.name());
  if (command === program) names.push(...PLATFORM_COMMANDS);
  return names.filter((n) => n.startsWith(prefix));
}

export function registerCompletion(program: Command): void {
  program
    .command('completion')
    .argument('<shell>', 'bash, zsh or fish')
    .description('print the shell completion script')
    .addHelpText(
      'after',
      `
Examples:
  source <(mariner completion bash)                              # in ~/.bashrc
  source <(mariner completion zsh)                               # in ~/.zshrc
  mariner completion fish > ~/.config/fish/completions/mariner.fish`,
    )
    .action((shell: string) => {
      const script = SCRIPTS[shell];
      if (!script) throw new UsageError(`no completion for "${shell}": bash, zsh or fish`);
      process.stdout.write(script);
    });

  program
    .command('__complete', { hidden: true })
    .argument('[words...]')
    .allowUnknownOption()
    .helpOption(false)
    .action((words: string[]) => {
      const candidates = complete(program, words.length ? words : ['']);
      if (candidates.length) process.stdout.write(`${candidates.join('\n')}\n`);
    });
}
