// Entry point: parse the command line, hand over to one verb. Each verb lives in src/cli/
// and sets process.exitCode: 0 ok, 1 runtime failure, 2 usage or config error.
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { register as check } from './cli/check.js';
import { register as collect } from './cli/collect.js';
import { register as demo } from './cli/demo.js';
import { register as events } from './cli/events.js';
import { register as firewall } from './cli/firewall.js';
import { register as fleet } from './cli/fleet.js';
import { register as pcap } from './cli/pcap.js';
import { register as pki } from './cli/pki.js';
import { register as replay } from './cli/replay.js';
import { register as run } from './cli/run.js';
import { register as stats } from './cli/stats.js';

const VERBS = [run, check, firewall, events, stats, demo, fleet, collect, pki, replay, pcap];

export async function main(argv: string[]): Promise<number> {
  const program = new Command('honeygate')
    .description(
      "Gateway for honeypot farms: takes connections on every watched port, hands them to honeypots with the attacker's address, records every flow.",
    )
    .version(version())
    .showHelpAfterError()
    .exitOverride();
  for (const register of VERBS) register(program);
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? 0 : 2;
    }
    throw err;
  }
  return Number(process.exitCode ?? 0);
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  return String(pkg.version);
}
