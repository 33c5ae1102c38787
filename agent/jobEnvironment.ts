/**
 * The environment of a job the local executor runs: the few variables any process needs to run
 * (where programs are, the user's home, locale and time zone, the temp folder, which GPUs it may use),
 * then the job's own (the trainer contract in agent/README.md; a batch job's envs, MARINER_JOB_ID and
 * OPENAI_BASE_URL). Nothing else of the agent's: its environment holds the registration key, database
 * URLs, cloud and Hugging Face credentials, and a batch job's command is a tenant's code.
 */
const INHERITED = new Set([
  'PATH',
  'HOME',
  'USER',
  'LOGNAME',
  'SHELL',
  'LANG',
  'LANGUAGE',
  'TZ',
  'TMPDIR',
  'TMP',
  'TEMP',
  'TERM',
  // Which GPUs (and the driver libraries) the operator gave this machine's jobs.
  'CUDA_VISIBLE_DEVICES',
  'NVIDIA_VISIBLE_DEVICES',
  'LD_LIBRARY_PATH',
]);

/** Locale categories (LC_ALL, LC_CTYPE, ...). */
const INHERITED_PREFIX = 'LC_';

export function jobEnvironment(agentEnv: NodeJS.ProcessEnv, jobEnv: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(agentEnv)) {
    if (value !== undefined && (INHERITED.has(name) || name.startsWith(INHERITED_PREFIX))) env[name] = value;
  }
  return { ...env, ...jobEnv };
}
