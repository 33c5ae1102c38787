import { describe, expect, it } from 'vitest';
import { CronError, CronSchedule } from '../lib/cron.js';

const at = (iso: string) => Date.parse(iso);
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

describe('cron schedules (5 fields, in a time zone)', () => {
  it('finds the next and previous firing of a weekday working-hours expression', () => {
    const opens = new CronSchedule('0 9 * * MON-FRI', 'Europe/Berlin');
    // Saturday 2026-12-05 12:00 UTC: the next opening is Monday 09:00 CET (08:00 UTC).
    expect(iso(opens.next(at('2026-12-05T12:00:00Z')))).toBe('2026-12-07T08:00:00.000Z');
    // The last one before was Friday 09:00 CET.
    expect(iso(opens.previous(at('2026-12-05T12:00:00Z')))).toBe('2026-12-04T08:00:00.000Z');
    // At the firing minute itself: previous includes it, next does not.
    expect(iso(opens.previous(at('2026-12-07T08:00:30Z')))).toBe('2026-12-07T08:00:00.000Z');
    expect(iso(opens.next(at('2026-12-07T08:00:00Z')))).toBe('2026-12-08T08:00:00.000Z');
  });

  it('evaluates the same expression in each time zone', () => {
    const ny = new CronSchedule('0 9 * * *', 'America/New_York');
    const kolkata = new CronSchedule('0 9 * * *', 'Asia/Kolkata');
    const utc = new CronSchedule('0 9 * * *');
    const from = at('2026-12-07T00:00:00Z');
    expect(iso(ny.next(from))).toBe('2026-12-07T14:00:00.000Z');
    expect(iso(kolkata.next(from))).toBe('2026-12-07T03:30:00.000Z');
    expect(iso(utc.next(from))).toBe('2026-12-07T09:00:00.000Z');
  });

  it('skips a wall-clock time the spring-forward night does not have, and fires once on a repeated one', () => {
    const berlin = new CronSchedule('30 2 * * *', 'Europe/Berlin');
    // 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that night.
    expect(iso(berlin.next(at('2026-03-28T12:00:00Z')))).toBe('2026-03-30T00:30:00.000Z');
    expect(iso(berlin.previous(at('2026-03-29T23:00:00Z')))).toBe('2026-03-28T01:30:00.000Z');
    // 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 comes twice (00:30 and 01:30 UTC): it fires at the first.
    expect(iso(berlin.next(at('2026-10-24T12:00:00Z')))).toBe('2026-10-25T00:30:00.000Z');
    expect(iso(berlin.next(at('2026-10-25T00:30:00Z')))).toBe('2026-10-26T01:30:00.000Z');
    expect(berlin.firesAt(at('2026-10-25T01:30:00Z'))).toBe(false);
    // An hour of working time in New York keeps its wall-clock time across the change.
    const ny = new CronSchedule('0 9 * * *', 'America/New_York');
    expect(iso(ny.next(at('2026-03-07T15:00:00Z')))).toBe('2026-03-08T13:00:00.000Z');
    expect(iso(ny.previous(at('2026-03-08T12:00:00Z')))).toBe('2026-03-07T14:00:00.000Z');
  });

  it('takes steps, lists, names, Sunday as 7, and either day field when both are restricted', () => {
    const steps = new CronSchedule('*/15 8-10 * * *');
    expect(iso(steps.next(at('2026-12-07T08:14:00Z')))).toBe('2026-12-07T08:15:00.000Z');
    expect(iso(steps.next(at('2026-12-07T10:45:00Z')))).toBe('2026-12-08T08:00:00.000Z');
    const sunday = new CronSchedule('0 0 * * 7');
    expect(iso(sunday.next(at('2026-12-07T00:00:00Z')))).toBe('2026-12-13T00:00:00.000Z');
    // Day 1 of the month OR a Friday (Vixie cron).
    const either = new CronSchedule('0 0 1 * fri');
    expect(iso(either.next(at('2026-11-28T00:00:00Z')))).toBe('2026-12-01T00:00:00.000Z');
    expect(iso(either.next(at('2026-12-01T00:00:00Z')))).toBe('2026-12-04T00:00:00.000Z');
    const yearly = new CronSchedule('0 12 25 dec *', 'Pacific/Auckland');
    expect(iso(yearly.next(at('2026-12-26T00:00:00Z')))).toBe('2027-12-24T23:00:00.000Z');
    expect(new CronSchedule('0 0 31 2 *').next(at('2026-01-01T00:00:00Z'))).toBeNull();
  });

  it('refuses a malformed expression or an unknown time zone with a message that names the problem', () => {
    expect(() => new CronSchedule('0 9 * *')).toThrow(/5 fields/);
    expect(() => new CronSchedule('60 9 * * *')).toThrow(/minute 60 is outside 0-59/);
    expect(() => new CronSchedule('0 17-9 * * *')).toThrow(/runs backwards/);
    expect(() => new CronSchedule('*/0 * * * *')).toThrow(/positive integer/);
    expect(() => new CronSchedule('0 9 * * XYZ')).toThrow(/day of week "XYZ"/);
    expect(() => new CronSchedule('0 9 * * *', 'Mars/Olympus')).toThrow(CronError);
  });
});
