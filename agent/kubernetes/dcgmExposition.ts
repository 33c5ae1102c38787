/**
 * A reader of the Prometheus text exposition format (version 0.0.4), as the NVIDIA DCGM exporter
 * serves it on `/metrics`:
 * https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
 *
 *   # HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
 *   # TYPE DCGM_FI_DEV_GPU_UTIL gauge
 *   DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-…",modelName="NVIDIA A100-SXM4-80GB",Hostname="node-a"} 87
 *
 * A small scanner over each line (name, `{label="value",…}` with the format's three escapes, a value,
 * an optional timestamp), not a pattern: label values hold any character, commas and braces included.
 * Prometheus fails a whole scrape on one bad line; here unreadable lines are counted and skipped, so
 * one odd line of an exporter does not cost every GPU's numbers.
 */

export interface ExpositionSample {
  name: string;
  labels: Record<string, string>;
  value: number;
  /** Milliseconds since the epoch, when the line carries one. */
  timestamp: number | null;
}

export interface Exposition {
  samples: ExpositionSample[];
  /** `# TYPE` lines: metric name → counter, gauge, histogram, summary or untyped. */
  types: Map<string, string>;
  /** Lines that were not comments, blank, or readable samples. */
  malformedLines: number;
}

const NAME_START = /[a-zA-Z_:]/;
const NAME_CHAR = /[a-zA-Z0-9_:]/;
const LABEL_START = /[a-zA-Z_]/;
const LABEL_CHAR = /[a-zA-Z0-9_]/;

class LineError extends Error {}

/** One sample line, read left to right. */
class SampleLine {
  private at = 0;
  constructor(private readonly text: string) {}

  read(): ExpositionSample {
    const name = this.identifier(NAME_START, NAME_CHAR, 'metric name');
    const spaced = this.spaces();
    const hasLabels = this.peek() === '{';
    const labels = hasLabels ? this.labels() : {};
    if (!(hasLabels ? this.spaces() : spaced)) throw new LineError('expected a space before the value');
    const value = parseValue(this.token());
    let timestamp: number | null = null;
    if (this.spaces() && this.at < this.text.length) {
      const raw = this.token();
      if (!/^-?\d+$/.test(raw)) throw new LineError(`bad timestamp ${raw}`);
      timestamp = Number(raw);
    }
    this.spaces();
    if (this.at !== this.text.length) throw new LineError('unexpected text after the sample');
    return { name, labels, value, timestamp };
  }

  private peek(): string | undefined {
    return this.text[this.at];
  }

  /** Skips spaces and tabs; true when there were any. */
  private spaces(): boolean {
    const start = this.at;
    while (this.peek() === ' ' || this.peek() === '\t') this.at++;
    return this.at > start;
  }

  private identifier(start: RegExp, rest: RegExp, what: string): string {
    const from = this.at;
    if (!start.test(this.peek() ?? '')) throw new LineError(`expected a ${what}`);
    this.at++;
    while (rest.test(this.peek() ?? '')) this.at++;
    return this.text.slice(from, this.at);
  }

  private token(): string {
    const from = this.at;
    while (this.at < this.text.length && this.peek() !== ' ' && this.peek() !== '\t') this.at++;
    if (this.at === from) throw new LineError('expected a value');
    return this.text.slice(from, this.at);
  }

  /** `{name="value",…}`: a trailing comma is allowed, as Prometheus' own parser allows it. */
  private labels(): Record<string, string> {
    const labels: Record<string, string> = {};
    this.at++; // {
    for (;;) {
      this.spaces();
      if (this.peek() === '}') break;
      const name = this.identifier(LABEL_START, LABEL_CHAR, 'label name');
      this.spaces();
      if (this.peek() !== '=') throw new LineError(`expected = after label ${name}`);
      this.at++;
      this.spaces();
      labels[name] = this.quoted();
      this.spaces();
      if (this.peek() === ',') {
        this.at++;
        continue;
      }
      if (this.peek() !== '}') throw new LineError('expected , or } after a label');
      break;
    }
    this.at++; // }
    return labels;
  }

  /** A label value: double-quoted, with `\\`, `\"` and `\n` escaped. */
  private quoted(): string {
    if (this.peek() !== '"') throw new LineError('expected a quoted label value');
    this.at++;
    let value = '';
    for (;;) {
      const c = this.peek();
      if (c === undefined) throw new LineError('unterminated label value');
      this.at++;
      if (c === '"') return value;
      if (c !== '\\') {
        value += c;
        continue;
      }
      const escaped = this.peek();
      this.at++;
      if (escaped === 'n') value += '\n';
      else if (escaped === '\\' || escaped === '"') value += escaped;
      else throw new LineError(`unknown escape \\${escaped ?? ''}`);
    }
  }
}

/** A sample value: a Go float, or NaN, +Inf, -Inf. */
function parseValue(raw: string): number {
  if (raw === 'NaN') return NaN;
  if (raw === '+Inf' || raw === 'Inf') return Infinity;
  if (raw === '-Inf') return -Infinity;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(raw)) throw new LineError(`bad value ${raw}`);
  return Number(raw);
}

/** Reads an exposition: every sample, the declared types, and how many lines were unreadable. */
export function parseExposition(text: string): Exposition {
  const samples: ExpositionSample[] = [];
  const types = new Map<string, string>();
  let malformedLines = 0;
  for (const rawLine of text.split('\n')) {
    const line = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine;
    const trimmed = line.trim();
    if (trimmed === '') continue;
    if (trimmed.startsWith('#')) {
      const [, keyword, name, type] = trimmed.split(/[ \t]+/);
      if (keyword === 'TYPE' && name && type) types.set(name, type);
      continue;
    }
    try {
      samples.push(new SampleLine(trimmed).read());
    } catch (error) {
      if (!(error instanceof LineError)) throw error;
      malformedLines++;
    }
  }
  return { samples, types, malformedLines };
}
