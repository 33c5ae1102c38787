/**
 * Five-field cron expressions (minute hour day-of-month month day-of-week) evaluated in an IANA time
 * zone through Intl, for the autoscaler's scaling schedules (agent/autoscaler.ts). Fields take `*`,
 * numbers, ranges `a-b`, steps `*\/n` and `a-b/n`, lists `a,b`, and month and weekday names (JAN,
 * MON); day of week 0 or 7 is Sunday. As in Vixie cron, when both day fields are restricted a day
 * matching either one matches.
 *
 * Daylight saving time: a wall-clock time the clock skips (02:30 on the spring-forward night in
 * Europe/Berlin) does not fire that day; a time the clock repeats (02:30 on the fall-back night)
 * fires once, at its first occurrence.
 */

export class CronError extends Error {}

interface Field {
  values: Set<number>;
  /** `*` (or `*\/1`): any value. */
  any: boolean;
}

const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];
const DAYS = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];

const FIELDS: { name: string; min: number; max: number; names?: string[]; nameBase?: number }[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: MONTHS, nameBase: 1 },
  { name: 'day of week', min: 0, max: 7, names: DAYS, nameBase: 0 },
];

function parseField(text: string, spec: (typeof FIELDS)[number]): Field {
  const values = new Set<number>();
  const number = (token: string): number => {
    const upper = token.toUpperCase();
    const named = spec.names?.indexOf(upper) ?? -1;
    if (named >= 0) return named + spec.nameBase!;
    if (!/^\d+$/.test(token)) throw new CronError(`${spec.name} "${token}" is not a number`);
    const value = Number(token);
    if (value < spec.min || value > spec.max) throw new CronError(`${spec.name} ${value} is outside ${spec.min}-${spec.max}`);
    return value;
  };
  let any = false;
  for (const part of text.split(',')) {
    const [range, stepText, extra] = part.split('/');
    if (extra !== undefined || range === undefined || range === '') throw new CronError(`${spec.name} "${part}" is not a valid field`);
    let step = 1;
    if (stepText !== undefined) {
      if (!/^\d+$/.test(stepText) || Number(stepText) === 0) throw new CronError(`${spec.name} step "${stepText}" must be a positive integer`);
      step = Number(stepText);
    }
    let from: number;
    let to: number;
    if (range === '*') {
      from = spec.min;
      to = spec.max;
      if (step === 1) any = true;
    } else if (range.includes('-')) {
      const [a, b, more] = range.split('-');
      if (more !== undefined || !a || !b) throw new CronError(`${spec.name} "${range}" is not a valid range`);
      from = number(a);
      to = number(b);
      if (from > to) throw new CronError(`${spec.name} range ${range} runs backwards`);
    } else {
      from = number(range);
      to = stepText === undefined ? from : spec.max;
    }
    for (let value = from; value <= to; value += step) values.add(value);
  }
  if (spec.name === 'day of week' && values.has(7)) values.add(0);
  return { values, any };
}

/** The wall-clock fields of an instant in a time zone. */
interface Local {
  minute: number;
  hour: number;
  day: number;
  month: number;
  weekday: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** A formatter for the time zone; a CronError for a zone Intl does not know. */
function formatter(timeZone: string): Intl.DateTimeFormat {
  let format = formatters.get(timeZone);
  if (!format) {
    try {
      format = new Intl.DateTimeFormat('en-US', {
        timeZone,
        hourCycle: 'h23',
        month: 'numeric',
        day: 'numeric',
        hour: 'numeric',
        minute: 'numeric',
        weekday: 'short',
      });
    } catch {
      throw new CronError(`time zone "${timeZone}" is not an IANA time zone`);
    }
    formatters.set(timeZone, format);
  }
  return format;
}

function localTime(format: Intl.DateTimeFormat, at: number): Local {
  const local: Local = { minute: 0, hour: 0, day: 0, month: 0, weekday: 0 };
  for (const part of format.formatToParts(at)) {
    if (part.type === 'minute') local.minute = Number(part.value);
    else if (part.type === 'hour') local.hour = Number(part.value);
    else if (part.type === 'day') local.day = Number(part.value);
    else if (part.type === 'month') local.month = Number(part.value);
    else if (part.type === 'weekday') local.weekday = DAYS.indexOf(part.value.toUpperCase());
  }
  return local;
}

const MINUTE = 60_000;
/** How far `next` and `previous` look: a year and a day (an expression may fire once a year). */
const HORIZON_MS = 367 * 24 * 3600_000;

export class CronSchedule {
  private readonly fields: Field[];
  private readonly format: Intl.DateTimeFormat;

  constructor(
    readonly expression: string,
    readonly timeZone = 'UTC',
  ) {
    const parts = expression.trim().split(/\s+/);
    if (parts.length !== 5) throw new CronError(`"${expression}" must have 5 fields (minute hour day-of-month month day-of-week), not ${parts.length}`);
    this.fields = parts.map((part, i) => parseField(part, FIELDS[i]!));
    this.format = formatter(timeZone);
  }

  private matchesLocal(local: Local): boolean {
    const [minute, hour, dom, month, dow] = this.fields as [Field, Field, Field, Field, Field];
    if (!minute.values.has(local.minute) || !hour.values.has(local.hour) || !month.values.has(local.month)) return false;
    const domOk = dom.values.has(local.day);
    const dowOk = dow.values.has(local.weekday);
    if (dom.any || dow.any) return domOk && dowOk;
    return domOk || dowOk;
  }

  /** Whether the schedule fires at the minute starting at `at` (ms, a whole minute). */
  firesAt(at: number): boolean {
    const local = localTime(this.format, at);
    if (!this.matchesLocal(local)) return false;
    // The second pass through a repeated wall-clock hour (fall back) does not fire again.
    const hourBefore = localTime(this.format, at - 60 * MINUTE);
    return !(hourBefore.hour === local.hour && hourBefore.minute === local.minute && hourBefore.day === local.day);
  }

  /**
   * Steps from `start` (a whole minute) by `direction`, skipping the rest of an hour whose local hour,
   * day or month cannot match; the first firing minute, or null within the horizon.
   */
  private search(start: number, direction: 1 | -1): number | null {
    const [, hour, , month] = this.fields as [Field, Field, Field, Field, Field];
    const end = start + direction * HORIZON_MS;
    for (let at = start; direction === 1 ? at <= end : at >= end;) {
      const local = localTime(this.format, at);
      const dayPossible = month.values.has(local.month) && this.dayMatches(local);
      if (!dayPossible || !hour.values.has(local.hour)) {
        // Jump to the first minute of the next (or the last minute of the previous) local hour.
        at += direction === 1 ? (60 - local.minute) * MINUTE : -(local.minute + 1) * MINUTE;
        continue;
      }
      if (this.firesAt(at)) return at;
      at += direction * MINUTE;
    }
    return null;
  }

  private dayMatches(local: Local): boolean {
    const [, , dom, , dow] = this.fields as [Field, Field, Field, Field, Field];
    const domOk = dom.values.has(local.day);
    const dowOk = dow.values.has(local.weekday);
    if (dom.any || dow.any) return domOk && dowOk;
    return domOk || dowOk;
  }

  /** The first firing strictly after `after` (ms), or null when none within a year. */
  next(after: number): number | null {
    return this.search(Math.floor(after / MINUTE) * MINUTE + MINUTE, 1);
  }

  /** The last firing at or before `atOrBefore` (ms), or null when none within a year. */
  previous(atOrBefore: number): number | null {
    return this.search(Math.floor(atOrBefore / MINUTE) * MINUTE, -1);
  }
}
