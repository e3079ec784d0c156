import pino from 'pino';

export type Logger = pino.Logger;

/** JSON lines on stdout, written synchronously: logs are for our own faults and lifecycle
 * (attacker behaviour goes to events), so they are few, and none are lost at exit. */
export function createLogger(level: string): Logger {
  return pino(
    { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: 1, sync: true }),
  );
}
