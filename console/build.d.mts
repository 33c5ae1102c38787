/** Types of console/build.mjs, for the tests that import it. */
export function consoleFingerprint(): string;
export function consoleUpToDate(): boolean;
export function buildConsole(options?: { force?: boolean; quiet?: boolean }): Promise<boolean>;
