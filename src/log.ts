import { pino, type Logger } from 'pino';

/**
 * Process-wide pino logger (JSON to stdout). Redaction paths are a second line of defence:
 * code must not pass secrets to the logger in the first place.
 */
export const log: Logger = pino({
  level: process.env.PORTCULLIS_LOG_LEVEL ?? 'info',
  base: { service: 'portcullis' },
  redact: {
    paths: [
      '*.authorization',
      '*.headers.authorization',
      '*.headers["x-api-key"]',
      '*.headers.cookie',
      '*.secret',
      '*.token',
    ],
    censor: '[redacted]',
  },
});

/** Sets the level after config load (config may be more or less verbose than the default). */
export function setLogLevel(level: string): void {
  log.level = level;
}
