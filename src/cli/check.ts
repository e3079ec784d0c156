// `honeygate check -c FILE`: validate a configuration and print what it means — the
// listeners, the backends, the routing table in words, warnings, and rules that can never
// match. Exit code 0 when valid (also with warnings), 2 when not. An unset ${VAR} is a
// warning here (run gets it from its service's environment), and so is an event store
// directory missing on this host (run would refuse to start).
import type { Command } from 'commander';
import {
  explainBackends,
  explainListeners,
  explainRoutes,
  findUnboundPortRoutes,
  findUnreachableRoutes,
} from '../config/explain.js';
import { missingStoreDirs } from '../config/store-dirs.js';
import type { Config } from '../config/types.js';
import { explainKernel } from '../kernel/plan.js';
import { loadOrReport } from './load-config.js';

/** The report printed for a valid configuration, as lines. */
export function checkReport(file: string, config: Config, warnings: string[]): string[] {
  const indent = (lines: string[]) => lines.map((l) => `  ${l}`);
  const lines = [
    `${file}: ok`,
    'listeners:',
    ...indent(explainListeners(config)),
    'backends:',
    ...indent(config.backends.size ? explainBackends(config) : ['(none)']),
    'routes (first match wins):',
    ...indent(explainRoutes(config)),
  ];
  if (config.routes.every((r) => r.match)) lines.push('  flows that match no rule are closed (no-route)');
  const kernel = explainKernel(config);
  if (kernel.length)
    lines.push(
      'in the kernel (engine: kernel, `honeygate firewall show` prints the rules):',
      ...indent(kernel),
    );
  if (warnings.length) lines.push('warnings:', ...indent(warnings));
  const shadowed = findUnreachableRoutes(config);
  const unreachable = [
    ...shadowed.map((u) => `#${u.index} can never match: #${u.shadowedBy} already takes every flow it would`),
    ...findUnboundPortRoutes(config)
      .filter((u) => !shadowed.some((s) => s.index === u.index))
      .map((u) => `#${u.index} can never match: no listener it applies to binds port ${u.ports}`),
  ];
  if (unreachable.length) lines.push('unreachable rules:', ...indent(unreachable));
  return lines;
}

export function register(program: Command): void {
  program
    .command('check')
    .description('validate a configuration file and print the effective routing table')
    .requiredOption('-c, --config <file>', 'configuration file (YAML)')
    .action(async (opts: { config: string }) => {
      const result = loadOrReport('check', opts.config);
      if (!result) {
        process.exitCode = 2;
        return;
      }
      const warnings = [
        ...result.warnings,
        ...(result.config.events.createDirectories ? [] : missingStoreDirs(result.config.events)).map(
          (m) => `${opts.config}: ${m}; run would not start`,
        ),
      ];
      process.stdout.write(`${checkReport(opts.config, result.config, warnings).join('\n')}\n`);
    });
}
