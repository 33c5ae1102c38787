import Table from 'cli-table3';
import YAML from 'yaml';
import { UsageError } from './errors.js';

/**
 * Every command's output, in the format `-o` asks: `table` (the default, for people), `json` or `yaml`
 * (for scripts: the same objects, keys in a fixed order, one document; stable across releases: fields
 * are added, never renamed or removed).
 */
export type OutputFormat = 'table' | 'json' | 'yaml' | 'id';
/** `id`: only the id of what the command shows (one a line for a list), for `$(...)` in scripts. */
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['table', 'json', 'yaml', 'id'];

export function parseFormat(value: string | undefined): OutputFormat {
  const format = (value ?? 'table') as OutputFormat;
  if (!OUTPUT_FORMATS.includes(format)) throw new UsageError(`-o must be one of ${OUTPUT_FORMATS.join(', ')}, not "${value}"`);
  return format;
}

/** A table column: its heading and how a row shows it. */
export interface Column<T> {
  header: string;
  value: (row: T) => unknown;
}

function cell(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (Array.isArray(value)) return value.map(cell).join(', ');
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

export function renderTable<T>(rows: readonly T[], columns: readonly Column<T>[]): string {
  const table = new Table({
    head: columns.map((c) => c.header),
    style: { head: [], border: [], compact: true, 'padding-left': 0, 'padding-right': 2 },
    chars: {
      top: '',
      'top-mid': '',
      'top-left': '',
      'top-right': '',
      bottom: '',
      'bottom-mid': '',
      'bottom-left': '',
      'bottom-right': '',
      left: '',
      'left-mid': '',
      mid: '',
      'mid-mid': '',
      right: '',
      'right-mid': '',
      middle: '',
    },
  });
  for (const row of rows) table.push(columns.map((c) => cell(c.value(row))));
  return `${table
    .toString()
    .split('\n')
    .map((line) => line.trimEnd())
    .join('\n')}\n`;
}

/** Prints a list: a table of `columns`, or `{items: [...]}` as JSON/YAML. */
export function printList<T>(
  format: OutputFormat,
  items: readonly T[],
  columns: readonly Column<T>[],
  write = (text: string) => process.stdout.write(text),
): void {
  if (format === 'table') write(items.length ? renderTable(items, columns) : 'No resources found.\n');
  else printData(format, { items });
}

/** Prints one object: `key  value` lines, or the object as JSON/YAML. */
export function printObject(format: OutputFormat, value: Record<string, unknown>, write = (text: string) => process.stdout.write(text)): void {
  if (format !== 'table') return printData(format, value);
  const width = Math.max(...Object.keys(value).map((k) => k.length));
  write(
    `${Object.entries(value)
      .map(([k, v]) => `${`${k}:`.padEnd(width + 2)}${cell(v)}`.trimEnd())
      .join('\n')}\n`,
  );
}

export function printData(format: Exclude<OutputFormat, 'table'>, value: unknown): void {
  if (format === 'id') {
    const { id, items } = (value ?? {}) as { id?: unknown; items?: { id?: unknown }[] };
    if (Array.isArray(items)) return void process.stdout.write(items.map((item) => `${String(item.id ?? '')}\n`).join(''));
    if (typeof id === 'string') return void process.stdout.write(`${id}\n`);
    format = 'json';
  }
  process.stdout.write(format === 'json' ? `${JSON.stringify(value, null, 2)}\n` : YAML.stringify(value));
}
