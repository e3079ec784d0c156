// `honeygate firewall apply|show|remove|confirm|doctor`: honeygate's own nftables table and
// policy routing, in the network namespace the command runs in. Exit 0 ok, 1 the firewall
// could not be read or changed (or doctor found a problem), 2 usage or config error.
import type { Command } from 'commander';
import type { Config } from '../config/types.js';
import { positiveDuration } from '../config/zod.js';
import { HoneygateError } from '../errors.js';
import { apply, remove, show, undivertedNotes } from '../firewall/apply.js';
import {
  applyWithConfirm,
  cancelPending,
  confirm,
  defaultStateFile,
  readState,
  rollbackWhenDue,
} from '../firewall/confirm.js';
import { ctFlow, ctTarget } from '../firewall/conntrack.js';
import { doctor, formatFindings } from '../firewall/doctor/index.js';
import { renderRouting } from '../firewall/render.js';
import { loadOrReport } from './load-config.js';

const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
const err = (s: string) => process.stderr.write(s.endsWith('\n') ? s : `${s}\n`);

/** Loads the config as `check` does: every problem printed, exit 2. */
function load(verb: string, file: string): Config | null {
  const result = loadOrReport(`firewall ${verb}`, file, err);
  if (!result) {
    process.exitCode = 2;
    return null;
  }
  for (const w of result.warnings) err(`warning: ${w}`);
  return result.config;
}

/** Runs a verb body; our errors become one line and exit 1, anything else keeps its stack. */
async function guarded(verb: string, body: () => Promise<number | undefined>): Promise<void> {
  try {
    const code = await body();
    if (code !== undefined) process.exitCode = code;
  } catch (e) {
    err(`honeygate firewall ${verb}: ${e instanceof HoneygateError ? e.message : ((e as Error).stack ?? e)}`);
    process.exitCode = 1;
  }
}

function when(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
}

export function register(program: Command): void {
  const fw = program
    .command('firewall')
    .description(
      "manage honeygate's nftables table (inet honeygate) and policy routing in this network namespace",
    );

  fw.command('apply')
    .description('load the ruleset and add the missing ip rules/routes (atomic, idempotent)')
    .requiredOption('-c, --config <file>', 'configuration file (YAML)')
    .option(
      '--confirm <duration>',
      'roll back to the previous state after DURATION (e.g. 60s) unless `honeygate firewall confirm` runs first',
    )
    .action((opts: { config: string; confirm?: string }) =>
      guarded('apply', async () => {
        let timeoutMs: number | null = null;
        if (opts.confirm !== undefined) {
          try {
            timeoutMs = positiveDuration(opts.confirm);
          } catch (e) {
            err(`honeygate firewall apply: --confirm: ${(e as Error).message}`);
            return 2;
          }
        }
        const config = load('apply', opts.config);
        if (!config) return;
        const stateFile = defaultStateFile();
        if (timeoutMs === null) {
          if (await cancelPending(stateFile))
            out('a pending commit-confirm rollback was cancelled: this apply confirms');
          const r = await apply(config);
          report(config, r);
          return 0;
        }
        const c = await applyWithConfirm(config, timeoutMs, stateFile);
        report(config, c.result);
        out(
          [
            '',
            `commit-confirm: the previous firewall state comes back at ${when(c.state.deadline)} (in ${Math.round(timeoutMs / 1000)} s)${c.resumed ? ', restored to what it was before the first unconfirmed apply' : ''}, unless you confirm.`,
            'Check that you can still reach this host (open a NEW ssh session; the current one may survive a bad rule), then run:',
            '  honeygate firewall confirm',
            `Rollback state: ${c.stateFile} (rollback process pid ${c.state.pid}).`,
          ].join('\n'),
        );
        return 0;
      }),
    );

  fw.command('show')
    .description('print the ruleset and routing apply would load, then the live state and the differences')
    .requiredOption('-c, --config <file>', 'configuration file (YAML)')
    .action((opts: { config: string }) =>
      guarded('show', async () => {
        const config = load('show', opts.config);
        if (!config) return;
        out(await show(config));
        const pending = readState(defaultStateFile());
        if (pending?.rollbackError) out(`# commit-confirm: the rollback FAILED: ${pending.rollbackError}`);
        else if (pending)
          out(`# commit-confirm pending: rollback at ${when(pending.deadline)} unless confirmed`);
        return 0;
      }),
    );

  fw.command('remove')
    .description("delete table inet honeygate and honeygate's ip rules/routes; nothing else")
    .requiredOption('-c, --config <file>', 'configuration file (YAML; its firewall: settings name the rules)')
    .action((opts: { config: string }) =>
      guarded('remove', async () => {
        const config = load('remove', opts.config);
        if (!config) return;
        if (await cancelPending(defaultStateFile())) out('a pending commit-confirm rollback was cancelled');
        const r = await remove(config);
        out(r.table ? 'deleted table inet honeygate' : 'table inet honeygate was not there');
        for (const e of r.routing) out(`deleted: ${e.argv.join(' ').replace(' add ', ' del ')}`);
        if (r.routing.length === 0) out('no honeygate ip rule or route was there');
        return 0;
      }),
    );

  fw.command('confirm')
    .description('keep the state of the last `firewall apply --confirm` (cancels its rollback)')
    .option('-c, --config <file>', 'accepted for symmetry; not needed')
    .action(() =>
      guarded('confirm', async () => {
        const r = confirm(defaultStateFile());
        if (r.kind === 'kept') {
          out(r.rollbackError ? `kept (the rollback had failed: ${r.rollbackError})` : 'kept');
          return 0;
        }
        err(
          r.kind === 'too-late'
            ? 'honeygate firewall confirm: too late, the rollback is running or done'
            : 'honeygate firewall confirm: nothing to confirm (no `firewall apply --confirm` is pending in this network namespace)',
        );
        return 1;
      }),
    );

  fw.command('doctor')
    .description('inspect this host for everything transparent mode needs; exit 1 when something fails')
    .requiredOption('-c, --config <file>', 'configuration file (YAML)')
    .action((opts: { config: string }) =>
      guarded('doctor', async () => {
        const config = load('doctor', opts.config);
        if (!config) return;
        const findings = await doctor(config, undefined, { file: opts.config });
        out(formatFindings(findings));
        return findings.some((f) => f.status === 'fail') ? 1 : 0;
      }),
    );

  // Started detached by `apply --confirm`; not for people.
  fw.command('rollback', { hidden: true })
    .requiredOption('--state <file>', 'commit-confirm state file')
    .option('--now', 'do not wait for the deadline')
    .action((opts: { state: string; now?: boolean }) =>
      guarded('rollback', async () => {
        out(await rollbackWhenDue(opts.state, { now: opts.now === true }));
        return 0;
      }),
    );
}

function report(config: Config, r: Awaited<ReturnType<typeof apply>>): void {
  if (!r.ruleset) {
    const why = config.listeners.some((l) => l.tproxy)
      ? 'no divert on its tproxy listeners, no transparent backend'
      : 'no tproxy listener, no transparent backend';
    out(
      r.tableRemoved
        ? `the config needs no firewall rules (${why}): deleted table inet honeygate`
        : `the config needs no firewall rules (${why}): nothing to apply`,
    );
  } else {
    const diverts = (r.ruleset.match(/ tproxy ip6? to /g) ?? []).length;
    const udp = (r.ruleset.match(/ udp dport @\S+ tproxy ip6? to /g) ?? []).length;
    out(
      `applied table inet honeygate (${diverts} divert rule${diverts === 1 ? '' : 's'}${udp ? `, ${udp} of them UDP` : ''}) in this network namespace`,
    );
    out(`lock-out protection: ${r.protectedPorts.map((p) => `${p.port} (${p.why})`).join(', ')}`);
  }
  const added = new Set(r.added.map((e) => e.argv.join(' ')));
  for (const e of renderRouting(config, { protectedPorts: r.protectedPorts })) {
    const cmd = e.argv.join(' ');
    out(`${added.has(cmd) ? 'added:  ' : 'present:'} ${cmd.replace(' add ', ' ')}`);
  }
  for (const e of r.removed)
    out(`deleted (family no longer used): ${e.argv.join(' ').replace(' add ', ' ')}`);
  for (const note of undivertedNotes(config)) out(note);
  const ct = r.conntrack;
  if (ct && 'skipped' in ct)
    err(
      `warning: ${ct.skipped}; stale entries can keep datagrams to diverted UDP ports away from honeygate until they expire`,
    );
  else if (ct) {
    const n = ct.deleted.length;
    out(
      `conntrack: deleted ${n} stale UDP entr${n === 1 ? 'y' : 'ies'} (NATed elsewhere before these rules; moby/libnetwork#1994)` +
        (n
          ? `: ${ct.deleted
              .slice(0, 5)
              .map((e) => `${ctFlow(e)} was going to ${ctTarget(e)}`)
              .join('; ')}${n > 5 ? '; ...' : ''}`
          : ''),
    );
    for (const f of ct.failed) err(`warning: conntrack: could not delete ${f}`);
  }
}
