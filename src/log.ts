import { isatty } from 'node:tty';
import pino from 'pino';
import type { Config } from './config/types.js';
import { HoneygateError } from './errors.js';

export type Logger = pino.Logger;

/** `log.format`: `json` lines, `pretty` lines for people, or `auto`: pretty when stdout is a terminal. */
export type LogFormat = Config['log']['format'];

/**
 * Logs on stdout, written synchronously: logs are for our own faults and lifecycle (attacker
 * behaviour goes to events), so they are few, and none are lost at exit. JSON lines for
 * journald, Docker and log shippers; `pretty` (the default on a terminal) is one line per
 * record for people: time, level, message, then the fields as key=value.
 */
export function createLogger(level: string, format: LogFormat = 'auto'): Logger {
  const dest = pino.destination({ dest: 1, sync: true });
  const pretty = format === 'pretty' || (format === 'auto' && isatty(1));
  const opts: pino.LoggerOptions = {
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (!pretty) return pino(opts, dest);
  const color = isatty(1) && process.env.NO_COLOR === undefined;
  // pino hands each record over as its JSON line; the pretty stream writes it in words.
  return pino(opts, { write: (line: string) => dest.write(prettyLine(line, color)) });
}

const LEVELS: Record<number, [string, string]> = {
  10: ['TRACE', '\x1b[90m'],
  20: ['DEBUG', '\x1b[36m'],
  30: ['INFO ', '\x1b[32m'],
  40: ['WARN ', '\x1b[33m'],
  50: ['ERROR', '\x1b[31m'],
  60: ['FATAL', '\x1b[35m'],
};
const OMIT = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'err']);

/** A field's value as key=value text shows it: bare when it is one word, else as JSON. */
function valueText(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

/** Nested objects as dotted keys (`events.sqlite=...`); arrays stay whole. */
function fields(obj: Record<string, unknown>, prefix: string, out: string[]): void {
  for (const [k, v] of Object.entries(obj)) {
    if (prefix === '' && OMIT.has(k)) continue;
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0)
      fields(v as Record<string, unknown>, `${prefix}${k}.`, out);
    else out.push(`${prefix}${k}=${valueText(v)}`);
  }
}

/**
 * One pino JSON line as a line for people:
 * `14:02:03.120 INFO  ready config=x.yaml events.sqlite=/var/lib/honeygate/events.db`.
 * An error's stack follows on indented lines. A line that is not JSON passes unchanged.
 */
export function prettyLine(line: string, color = false): string {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const time = typeof r.time === 'string' ? r.time.slice(11, 23) : new Date().toISOString().slice(11, 23);
  const [name, ansi] = LEVELS[Number(r.level)] ?? [String(r.level), ''];
  const level = color && ansi ? `${ansi}${name}\x1b[0m` : name;
  const out: string[] = [];
  fields(r, '', out);
  const msg = typeof r.msg === 'string' ? r.msg : '';
  let text = [time, level, msg, ...out].filter((s) => s !== '').join(' ');
  const err = r.err as { stack?: string; message?: string } | undefined;
  if (err && typeof err === 'object') {
    const detail = err.stack ?? err.message ?? '';
    if (detail) text += `\n    ${detail.split('\n').join('\n    ')}`;
  }
  return `${text}\n`;
}

/** Logs what stops a start: our own errors say all there is to say; anything else keeps its stack. */
export function logFatal(log: Logger, err: unknown): void {
  if (err instanceof HoneygateError) log.fatal({ code: err.code }, err.message);
  else log.fatal({ err }, (err as Error).message);
}
