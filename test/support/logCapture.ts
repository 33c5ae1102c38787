import type { DestinationStream } from 'pino';

/** One structured log line as pino writes it. */
export type LogLine = Record<string, unknown> & { msg?: string };

/**
 * A pino destination that keeps every line, for tests that assert on what a component logs: pass it to
 * `createLogger(level, name, capture)`. `next()` waits on the line itself (no polling).
 */
export class LogCapture implements DestinationStream {
  readonly lines: LogLine[] = [];
  private readonly waiters = new Set<{ match: (line: LogLine) => boolean; resolve: (line: LogLine) => void }>();

  write(text: string): void {
    for (const raw of text.split('\n')) {
      if (raw.trim() === '') continue;
      const line = JSON.parse(raw) as LogLine;
      this.lines.push(line);
      for (const waiter of this.waiters) {
        if (!waiter.match(line)) continue;
        this.waiters.delete(waiter);
        waiter.resolve(line);
      }
    }
  }

  /** The first line, already written or to come, that `match` accepts. */
  next(match: (line: LogLine) => boolean, what: string, timeoutMs = 10_000): Promise<LogLine> {
    const found = this.lines.find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        resolve: (line: LogLine) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(
          new Error(
            `no log line ${what} within ${timeoutMs} ms; got:\n${this.lines
              .map((l) => JSON.stringify(l))
              .join('\n')
              .slice(-4000)}`,
          ),
        );
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }
}
