import { CronSchedule } from './cron.js';

/**
 * One scheduled change of a model's replica bounds: when `cron` fires (in `timeZone`), the model's
 * runtime scales within [minReplicas, maxReplicas] until another schedule of the model fires (the
 * one that fired last is in force, as scheduled actions of a cloud autoscaling group). maxReplicas 0
 * shuts the runtime down; with `onDemand`, a request during such a window still starts one replica
 * (which goes again after the scale-to-zero grace period).
 */
export interface ScalingSchedule {
  cron: string;
  /** An IANA time zone (default UTC). */
  timeZone: string;
  minReplicas: number;
  maxReplicas: number;
  onDemand: boolean;
}

/** Where a model's schedules stand at one instant. */
export interface ScheduleState {
  /** The schedule that fired last (null: none fired within a year, the scaler's settings hold). */
  active: ScalingSchedule | null;
  /** When the next schedule fires (null: none within a year). */
  nextChangeAt: number | null;
  /** Shut down by the schedule and not woken by requests: when a schedule with replicas fires next. */
  offUntil: number | null;
}

/** A model's schedules, parsed once; `state` is cached until the next firing. */
export class ModelSchedules {
  private readonly crons: CronSchedule[];
  private cached: { state: ScheduleState; from: number; until: number } | null = null;

  constructor(readonly schedules: readonly ScalingSchedule[]) {
    this.crons = schedules.map((s) => new CronSchedule(s.cron, s.timeZone));
  }

  state(now: number): ScheduleState {
    if (this.cached && now >= this.cached.from && now < this.cached.until) return this.cached.state;
    let active: ScalingSchedule | null = null;
    let firedAt = -Infinity;
    let nextChangeAt: number | null = null;
    let opensAt: number | null = null;
    this.crons.forEach((cron, i) => {
      const previous = cron.previous(now);
      // The later schedule in the list wins a tie.
      if (previous !== null && previous >= firedAt) {
        firedAt = previous;
        active = this.schedules[i]!;
      }
      const next = cron.next(now);
      if (next !== null && (nextChangeAt === null || next < nextChangeAt)) nextChangeAt = next;
      if (next !== null && this.schedules[i]!.maxReplicas > 0 && (opensAt === null || next < opensAt)) opensAt = next;
    });
    const current = active as ScalingSchedule | null;
    const shut = current !== null && current.maxReplicas === 0 && !current.onDemand;
    const state: ScheduleState = { active: current, nextChangeAt, offUntil: shut ? opensAt : null };
    this.cached = { state, from: Math.floor(now / 60_000) * 60_000, until: nextChangeAt ?? now + 3600_000 };
    return state;
  }
}

/** The replica bounds a schedule sets: an on-demand shutdown lets requests start one replica. */
export function scheduledBounds(schedule: ScalingSchedule): { minReplicas: number; maxReplicas: number } {
  if (schedule.maxReplicas === 0 && schedule.onDemand) return { minReplicas: 0, maxReplicas: 1 };
  return { minReplicas: schedule.minReplicas, maxReplicas: schedule.maxReplicas };
}

/**
 * A model's schedules as configured (MARINER_AUTOSCALER_SCHEDULES), checked: each needs a valid cron
 * expression and time zone and 0 ≤ minReplicas ≤ maxReplicas ≤ 1000. Throws an Error naming `where`.
 */
export function parseSchedules(value: unknown, where: string): ScalingSchedule[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > 32) throw new Error(`${where} must be a list of 1 to 32 schedules`);
  return value.map((item: unknown, i) => {
    const at = `${where}[${i}]`;
    if (typeof item !== 'object' || item === null || Array.isArray(item))
      throw new Error(`${at} must be an object {cron, timeZone, minReplicas, maxReplicas, onDemand}`);
    const s = item as Record<string, unknown>;
    for (const key of Object.keys(s)) {
      if (!['cron', 'timeZone', 'minReplicas', 'maxReplicas', 'onDemand'].includes(key))
        throw new Error(`${at}.${key} is not a schedule setting (cron, timeZone, minReplicas, maxReplicas, onDemand)`);
    }
    if (typeof s.cron !== 'string') throw new Error(`${at}.cron must be a cron expression`);
    const timeZone = s.timeZone === undefined ? 'UTC' : s.timeZone;
    if (typeof timeZone !== 'string') throw new Error(`${at}.timeZone must be an IANA time zone`);
    const count = (key: 'minReplicas' | 'maxReplicas') => {
      const n = s[key];
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 1000) throw new Error(`${at}.${key} must be an integer between 0 and 1000`);
      return n;
    };
    const minReplicas = count('minReplicas');
    const maxReplicas = count('maxReplicas');
    if (minReplicas > maxReplicas) throw new Error(`${at}: minReplicas must not exceed maxReplicas`);
    if (s.onDemand !== undefined && typeof s.onDemand !== 'boolean') throw new Error(`${at}.onDemand must be true or false`);
    const schedule: ScalingSchedule = { cron: s.cron, timeZone, minReplicas, maxReplicas, onDemand: s.onDemand === true };
    try {
      new CronSchedule(schedule.cron, schedule.timeZone);
    } catch (error) {
      throw new Error(`${at}: ${(error as Error).message}`);
    }
    return schedule;
  });
}
