import { type Logger, pino } from 'pino';

export type { Logger };

/** Structured JSON logs on stdout; never log tokens or entry values. */
export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'statehouse' }, redact: ['req.headers.authorization', 'authorization', 'token'] });
}
