import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/** Structured JSON logs (to stdout, or `destination`). Credentials are redacted wherever they might appear. */
export function createLogger(level: string, name = 'mariner', destination?: DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    name,
    level,
    redact: {
      paths: ['req.headers.authorization', 'headers.authorization', 'authorization', 'secret', '*.secret', 'apiKey', 'token', '*.token'],
      censor: '[redacted]',
    },
  };
  return destination ? pino(options, destination) : pino(options);
}

/** A logger that drops everything, for tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
