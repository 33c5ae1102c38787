import { pino, type DestinationStream, type Logger } from 'pino';
import pretty from 'pino-pretty';
import { logFormatSetting, type LogFormat } from './config.js';

export type { Logger, LogFormat };

/** Whether lines are written readable or as JSON: `auto` is readable on a terminal only (issue 24, item 9). */
export function prettyLogs(format: LogFormat, isTerminal: boolean): boolean {
  return format === 'pretty' || (format === 'auto' && isTerminal);
}

/**
 * Readable lines (`[12:03:04.567] INFO: agent: tunnel connected {"transport":"upgrade"}`), one a record, written synchronously to stdout. A stream in
 * this thread, not a pino transport: transports load their module by name in a worker thread, which the
 * bundled dist/bin/mariner.js cannot serve (scripts/build.mjs), and a synchronous write keeps the lines
 * in order with the `mariner up` banner, which is written with process.stdout.write.
 */
function prettyStream(colorize: boolean): DestinationStream {
  return pretty({
    sync: true,
    destination: 1,
    colorize,
    singleLine: true,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname,name,component',
    messageFormat: '{if component}{component}: {end}{msg}',
  });
}

/**
 * JSON lines written synchronously to stdout. pino's default stream writes asynchronously (a write on the
 * thread pool), which a loaded machine let finish after a later process.stdout.write: the `mariner up`
 * banner came before the log line above it, and a line could be lost on a crash.
 */
function jsonStream(): DestinationStream {
  return pino.destination({ dest: 1, sync: true });
}

/**
 * Structured logs to stdout (or `destination`, always JSON). Credentials are redacted wherever they
 * might appear. On stdout the lines are JSON, or readable ones where `format` says so (MARINER_LOG_FORMAT
 * by default: readable on a terminal, JSON when piped, so collectors and tests parsing them see no change).
 */
export function createLogger(level: string, name = 'mariner', destination?: DestinationStream, format: LogFormat = logFormatSetting()): Logger {
  const options: pino.LoggerOptions = {
    name,
    level,
    redact: {
      paths: ['req.headers.authorization', 'headers.authorization', 'authorization', 'secret', '*.secret', 'apiKey', 'token', '*.token'],
      censor: '[redacted]',
    },
  };
  if (destination) return pino(options, destination);
  const terminal = process.stdout.isTTY === true;
  // Colours on a terminal unless NO_COLOR is set (https://no-color.org).
  return prettyLogs(format, terminal) ? pino(options, prettyStream(terminal && !process.env['NO_COLOR'])) : pino(options, jsonStream());
}

/** A logger that drops everything, for tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
