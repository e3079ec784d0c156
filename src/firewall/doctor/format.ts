// The doctor's output: findings as lines for a terminal, and the exit status they imply.
import type { Finding } from './finding.js';

/** 1 when a check failed, else 0 (warnings leave the exit status alone). */
export function exitCode(findings: Finding[]): number {
  return findings.some((f) => f.status === 'fail') ? 1 : 0;
}

const LABEL = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' } as const;

/** One line per finding (status, check, message), its fix below it, and a summary line. */
export function formatFindings(findings: Finding[]): string {
  const width = Math.max(0, ...findings.map((f) => f.check.length));
  const lines: string[] = [];
  for (const f of findings) {
    lines.push(`${LABEL[f.status]}  ${f.check.padEnd(width)}  ${f.message}`);
    if (f.fix) lines.push(`${' '.repeat(width + 8)}fix: ${f.fix}`);
  }
  const count = (s: Finding['status']) => findings.filter((f) => f.status === s).length;
  const [oks, warns, fails] = [count('ok'), count('warn'), count('fail')];
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  lines.push(
    `${oks} ok, ${plural(warns, 'warning')}, ${plural(fails, 'failure')}: ${
      fails
        ? 'transparent mode will not work until the failures are fixed'
        : warns
          ? 'works; read the warnings'
          : 'all is well'
    }`,
  );
  return `${lines.join('\n')}\n`;
}
