import pino from 'pino';
import { HoneygateError } from './errors.js';

export type Logger = pino.Logger;

/** JSON lines on stdout, written synchronously: logs are for our own faults and lifecycle
 * (attacker behaviour goes to events), so they are few, and none are lost at exit. */
export function createLogger(level: string): Logger {
  return pino(
    { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: 1, sync: true }),
  );
}

/** Logs what stops a start: our own errors say all there is to say; anything else keeps its stack. */
export function logFatal(log: Logger, err: unknown): void {
  if (err instanceof HoneygateError) log.fatal({ code: err.code }, err.message);
  else log.fatal({ err }, (err as Error).message);
}
