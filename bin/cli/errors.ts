/**
 * The command line's two kinds of failure, each with its exit code (docs/cli.md "Exit codes"):
 * - UsageError (2): the command line itself is wrong (an unknown option, a missing argument, a value
 *   out of range), found before anything is sent.
 * - CliError (1): the platform refused or failed (a bad key, a missing model, no network), or local
 *   state is missing (not logged in). The message is what stderr shows, after `mariner: `.
 */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export class CliError extends Error {
  readonly exitCode: number = EXIT_FAILURE;
  /** The platform's error code (`extensions.code` or the OpenAI error's code), when it gave one. */
  readonly code: string | undefined;
  constructor(message: string, code?: string) {
    super(message);
    this.code = code;
  }
}

export class UsageError extends CliError {
  override readonly exitCode: number = EXIT_USAGE;
}
