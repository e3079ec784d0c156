// `honeygate demo`: builds a throw-away farm of network namespaces (two attackers, the
// gateway, a honeypot host), runs honeygate in the gateway with transparent mode and its
// own firewall rules, attacks from both attackers (a connect scan, an SSH banner grab, an
// HTTP request), prints what the honeypot saw and the recorded events, and tears it all
// down, also on Ctrl-C, then says what it removed and checks that nothing is left. Needs root
// (namespaces, nftables) and nothing else installed.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { buildFarm, type Farm } from '../netns/topology.js';
import { demoFleet } from './demo-fleet.js';
import {
  ADMIN_PORT,
  attackUntilCtrlC,
  BIN,
  DEMO,
  honeypotRouting,
  missingPrerequisite,
  openDashboard,
  ownNamespaces,
  reportCleanup,
  say,
  startHoneypot,
  waitForLine,
} from './demo-shared.js';

export function register(program: Command): void {
  program
    .command('demo')
    .description(
      'build a throw-away network of namespaces, attack the gateway from it, show what the honeypot saw and the events (root)',
    )
    .option(
      '--keep',
      "leave the farm up until Ctrl-C, the gateway running and its dashboard open (with --fleet: the sensor and the hub, the hub's dashboard), attacked again every 15 s",
    )
    .option(
      '--fleet',
      'a remote sensor: the attackers hit a sensor that tunnels to a hub in front of the honeypot',
    )
    .action(async (opts: { keep?: boolean; fleet?: boolean }) => {
      process.exitCode = opts.fleet ? await demoFleet(opts.keep === true) : await demo(opts.keep === true);
    });
}

function config(farm: Farm, dir: string, token: string): string {
  const hp = farm.honeypot!;
  const { devs } = farm.gateway;
  return `# written by honeygate demo
listeners:
  - name: every-port
    tproxy: { port: 15001 }
    # 22 named by itself: diverted although sshd's port is otherwise protected
    divert: { interface: [${devs.attacker1}, ${devs.attacker2}], ports: [22, 1-65535] }
${honeypotRouting(hp, true)}events: { sqlite: ${path.join(dir, 'events.db')}, sensor: demo }
admin: { listen: "127.0.0.1:${ADMIN_PORT}", token: ${token} }
log: { level: info }
`;
}

export async function demo(keep: boolean): Promise<number> {
  const missing = missingPrerequisite();
  if (missing) {
    process.stderr.write(`${missing}\n`);
    return 1;
  }
  say(
    'building the farm: attacker1 198.51.100.10, attacker2 203.0.113.10, gateway, honeypot 192.0.2.100 ...',
  );
  let farm: Farm;
  try {
    farm = await buildFarm({ honeypotHost: true }); // removes what it made when it fails
  } catch (err) {
    process.stderr.write(`honeygate demo: ${(err as Error).message}\n`);
    return 1;
  }
  // made after the farm, removed with it: nothing is left when building fails
  const dir = mkdtempSync(path.join(tmpdir(), 'honeygate-demo-'));
  farm.topology.onDestroy(() => rmSync(dir, { recursive: true, force: true }));
  const t = farm.topology;
  const made = ownNamespaces(t.id);
  // Ctrl-C (or a kill): the farm's own exit hooks tear it down first; this one says what went.
  const onInterrupt = (signal: NodeJS.Signals) => {
    void farm.destroy();
    process.exit(reportCleanup(t.id, made, dir, signal) ? 130 : 1);
  };
  process.once('SIGINT', onInterrupt);
  process.once('SIGTERM', onInterrupt);
  const node = process.execPath;
  let dashboard: net.Server | null = null;
  try {
    const hp = farm.honeypot!;
    const { seen, ready: honeypotReady } = startHoneypot(t, hp.ns);

    const configFile = path.join(dir, 'honeygate.yaml');
    const token = randomBytes(16).toString('hex');
    writeFileSync(configFile, config(farm, dir, token));
    say(`gateway: honeygate run -c ${configFile} --manage-firewall`);
    const gateway = t.spawn(farm.gateway.ns, [node, BIN, 'run', '-c', configFile, '--manage-firewall'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    await Promise.all([honeypotReady, waitForLine(gateway, /"msg":"ready"/, 'honeygate')]);
    const attack = () =>
      Promise.all(
        [farm.attacker1, farm.attacker2].map((a, i) =>
          t.exec(
            a.ns,
            [
              node,
              path.join(DEMO, 'attack.js'),
              ...(i === 0 ? [farm.decoys.ip4] : [farm.decoys.ip6, farm.decoys.ip4]),
            ],
            { timeoutMs: 60_000 },
          ),
        ),
      );
    if (keep) {
      dashboard = await openDashboard(t, farm.gateway.ns, dir);
      const { port } = dashboard.address() as net.AddressInfo;
      say(`dashboard: http://127.0.0.1:${port}/  (token ${token})`);
    }

    say(
      '\nattacking: a connect scan of 14 ports, an SSH banner grab and an HTTP request, attacker1 on IPv4, attacker2 on IPv6 and IPv4',
    );
    say(
      `  targets: ${farm.decoys.ip4} and ${farm.decoys.ip6} (addresses nobody owns; the gateway catches them)\n`,
    );
    const results = await attack();
    results.forEach((r, i) => {
      const who = i === 0 ? 'attacker1' : 'attacker2';
      for (const line of r.stdout.split('\n').filter((l) => l.startsWith('{'))) {
        const { target, result } = JSON.parse(line) as { target: string; result: string };
        if (!/^(open \(no answer\)|ECONNREFUSED)$/.test(result))
          say(`  ${who} -> ${target.padEnd(24)} ${result}`);
      }
    });
    say('  (other ports: accepted and captured by honeygate: "open (no answer)")');

    say('\nwhat the honeypot saw (its own accept(), on the wire):');
    for (const s of seen) say(`  connection from ${s.peer.padEnd(26)} to ${s.local}`);
    const real = seen.filter((s) =>
      /^(198\.51\.100\.10|203\.0\.113\.10|\[?2001:db8:[ab]::10\]?):/.test(s.peer),
    ).length;
    say(`  ${real} of ${seen.length} connections came from the attackers' real addresses`);

    // With --keep the gateway goes on (the store is read while it writes); else it stops first.
    if (!keep) {
      gateway.kill('SIGTERM');
      await new Promise((r) => gateway.once('exit', r));
    }
    say('\nrecorded events (honeygate events):');
    const events = await t.exec(farm.gateway.ns, [
      node,
      BIN,
      'events',
      '--db',
      path.join(dir, 'events.db'),
      '--limit',
      '100',
    ]);
    process.stdout.write(events.stdout);
    if (keep) await attackUntilCtrlC(t.id, attack);
    return real > 0 && real === seen.length ? 0 : 1;
  } catch (err) {
    process.stderr.write(`honeygate demo: ${(err as Error).message}\n`);
    return 1;
  } finally {
    dashboard?.close();
    process.off('SIGINT', onInterrupt);
    process.off('SIGTERM', onInterrupt);
    await farm.destroy();
    if (!reportCleanup(t.id, made, dir)) process.exitCode = 1;
  }
}
