// ${VAR} substitution in the YAML document, before any schema sees it.
import { isMap, isScalar, isSeq, type Scalar } from 'yaml';
import { keyText, type Path, type Report } from './report.js';

const VAR_RE = /\$(\$\{)|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/**
 * What an unset variable (no default) is: 'error' for `run` and the other verbs; 'warn' for
 * `check`, which may run where the service's environment (systemd's Environment= or
 * EnvironmentFile=) is not: the variable is reported as a warning and the key is checked
 * with the `${VAR}` text in place.
 */
export type UnsetEnv = 'error' | 'warn';

/**
 * Replaces ${VAR} and ${VAR:-default} in every scalar value ($${ is a literal ${).
 * An unquoted scalar that becomes a number or a boolean takes that type, so
 * `retries: ${RETRIES:-2}` is the number 2.
 */
export function substituteEnv(
  report: Report,
  node: unknown,
  path: Path,
  env: NodeJS.ProcessEnv,
  unset: UnsetEnv = 'error',
): void {
  if (isMap(node)) {
    for (const pair of node.items)
      substituteEnv(report, pair.value, [...path, keyText(pair.key)], env, unset);
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => {
      substituteEnv(report, item, [...path, i], env, unset);
    });
  } else if (isScalar(node) && typeof node.value === 'string' && node.value.includes('$')) {
    const scalar = node as Scalar<unknown>;
    const before = scalar.value as string;
    const after = before.replace(VAR_RE, (whole, escaped, name: string | undefined, dflt) => {
      if (escaped) return escaped;
      const value = env[name!];
      if (value !== undefined && value !== '') return value;
      if (dflt !== undefined) return dflt;
      if (value === undefined && unset === 'warn') {
        report.warn(
          path,
          `environment variable ${name} is not set here: checked as the text \${${name}}; run needs it set (e.g. Environment= or EnvironmentFile= in its systemd unit)`,
        );
        return whole;
      }
      // Set but empty is an error too: an empty admin token would switch authentication off.
      report.error(
        path,
        `environment variable ${name} is ${value === '' ? 'empty' : 'not set'} (write \${${name}:-default} to give a default, \${${name}:-} for an empty one)`,
      );
      return whole;
    });
    if (after === before) return;
    scalar.value = after;
    if (scalar.type === 'PLAIN') {
      if (/^-?\d+(\.\d+)?$/.test(after)) scalar.value = Number(after);
      else if (after === 'true' || after === 'false') scalar.value = after === 'true';
    }
  }
}
