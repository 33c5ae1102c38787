import type { MarinerConfig } from '../../lib/config.js';

export interface AuditSettings {
  /** Entries older than this are removed by the retention cleaner; 0 keeps them forever. */
  retentionDays: number;
  /** How often the cleaner runs. */
  cleanIntervalMs: number;
}

/**
 * MARINER_AUDIT_RETENTION_DAYS (default 365, 0 = keep forever). Read here rather than in lib/config.ts
 * for now (another change owns that file); it moves there with the other settings.
 */
export function auditSettings(_config: MarinerConfig, env: NodeJS.ProcessEnv = process.env): AuditSettings {
  const raw = env['MARINER_AUDIT_RETENTION_DAYS'];
  const retentionDays = raw === undefined || raw === '' ? 365 : Number(raw);
  if (!Number.isInteger(retentionDays) || retentionDays < 0 || retentionDays > 36_500) {
    throw new Error(`MARINER_AUDIT_RETENTION_DAYS must be a whole number of days between 0 and 36500, not ${raw}`);
  }
  return { retentionDays, cleanIntervalMs: 60 * 60 * 1000 };
}
