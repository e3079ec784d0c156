// dnsmasq in a real Docker container as the UDP honeypot behind a UDP tproxy listener (issue
// 18, item 6): the Docker Engine runs in the farm's gateway namespace beside honeygate (`run
// --manage-firewall`), the container sits on docker0, and the backend is its bridge address
// with `source: transparent`. dig from the attacker to a decoy address gets the container's
// answer from the address and port it aimed at, and dnsmasq (log-queries) logs the
// attacker's own address, IPv4 and IPv6.
//
// No registry is reachable and Debian's dnsmasq is dynamically linked, so the image is built
// here: the host's dnsmasq with every library ldd names (and the loader), a static busybox
// for the shell, /etc/passwd and /etc/group, piped to `docker import`.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { nativeAvailable } from '../../src/net/native.js';
import { type Container, DockerEngine, dockerMissing, staticBusybox } from '../../src/netns/docker.js';
import { buildFarm, type Farm } from '../../src/netns/topology.js';
import { type GatewayProcess, startManagedGateway } from '../helpers/farm-gateway.js';
import { type EventRecord, runCli } from '../helpers/honeygate.js';
import { needsRoot, rootState } from '../helpers/netns.js';
import { needs, which } from '../helpers/peers.js';
import { waitFor } from '../helpers/wait.js';

const IMAGE = 'honeygate-test/dnsmasq';

function skipReason(): string | false {
  const missing = needsRoot() || needs('nft', 'dig', 'dnsmasq', 'ldd') || dockerMissing();
  if (missing) return missing;
  try {
    staticBusybox();
  } catch (err) {
    return (err as Error).message;
  }
  const native = nativeAvailable();
  return native.ok ? false : `a UDP tproxy listener needs the native addon: ${native.reason}`;
}
const skip = skipReason();

const TPROXY_PORT = 15054;

type UdpEvent = EventRecord & {
  transport?: string;
  udp?: { datagramsIn: number; datagramsOut: number; heldDatagrams: number; heldBytes: number };
};

/** The rootfs tar of IMAGE: busybox, the host's dnsmasq and the libraries it loads. */
function dnsmasqRootfs(dir: string): Buffer {
  const rootfs = path.join(dir, 'rootfs');
  const put = (from: string, to = from) => {
    const dest = path.join(rootfs, to);
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.copyFileSync(fs.realpathSync(from), dest);
    fs.chmodSync(dest, 0o755);
  };
  const dnsmasq = which('dnsmasq')!;
  put(dnsmasq, '/usr/sbin/dnsmasq');
  // "libx.so.1 => /lib/x86_64-linux-gnu/libx.so.1 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)"
  const libs = execFileSync('ldd', [dnsmasq], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.match(/(?:=>\s*)?(\/\S+)\s+\(0x/)?.[1])
    .filter((p): p is string => !!p);
  assert.ok(libs.length > 0, 'ldd names the libraries of dnsmasq');
  for (const lib of libs) put(lib);
  put(staticBusybox(), '/bin/busybox');
  fs.symlinkSync('busybox', path.join(rootfs, 'bin', 'sh'));
  fs.mkdirSync(path.join(rootfs, 'etc'), { recursive: true });
  fs.mkdirSync(path.join(rootfs, 'tmp'), { mode: 0o1777 });
  fs.writeFileSync(
    path.join(rootfs, 'etc', 'passwd'),
    'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n',
  );
  fs.writeFileSync(path.join(rootfs, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
  const tar = execFileSync('tar', ['-C', rootfs, '-cf', '-', '.'], { maxBuffer: 256 * 1024 * 1024 });
  fs.rmSync(rootfs, { recursive: true, force: true });
  return tar;
}

describe('dnsmasq in a Docker container behind a UDP tproxy listener', { skip, timeout: 110_000 }, () => {
  let farm: Farm;
  let engine: DockerEngine;
  let container: Container;
  let gateway: GatewayProcess;
  let dir = '';
  let rootBefore: Record<string, string> = {};

  /** dnsmasq's log: the container's output (it logs to stderr, the shell folds it into stdout). */
  const dnsLog = () => engine.docker(['logs', container.name]);

  async function events(): Promise<UdpEvent[]> {
    const r = await runCli(['events', '--db', path.join(dir, 'events.db'), '--json', '--limit', '1000']);
    if (r.code !== 0) throw new Error(`honeygate events exited ${r.code}: ${r.stderr}`);
    return r.stdout
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l));
  }

  async function dig(server: string, port: number, name: string): Promise<string> {
    const argv = ['dig', '+time=3', '+tries=1', '+short', '-p', String(port), `@${server}`, name];
    const r = await farm.topology.exec(farm.attacker1.ns, argv, { timeoutMs: 20_000 });
    assert.equal(r.code, 0, `dig @${server} -p ${port} ${name}: ${r.stdout}${r.stderr}`);
    return r.stdout.trim();
  }

  before(async () => {
    rootBefore = rootState();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hg-u4-udp-docker-'));
    fs.chmodSync(dir, 0o755);
    farm = await buildFarm();
    engine = await DockerEngine.start(farm.topology, farm.gateway.ns);
    await engine.docker(['import', '-', IMAGE], { input: dnsmasqRootfs(dir) });
    container = await engine.runContainer(
      'dns',
      [
        '/bin/sh',
        '-c',
        'exec /usr/sbin/dnsmasq --no-daemon --log-queries --log-facility=- --user=root --pid-file= ' +
          '--no-resolv --no-hosts --address=/docker.test/192.0.2.9 2>&1',
      ],
      { image: IMAGE, waitPort: 53 },
    );
    assert.ok(container.ip6, 'Docker runs with --ipv6: the container has an IPv6 address');
    fs.writeFileSync(
      path.join(dir, 'honeygate.yaml'),
      `limits:
  udp: { idleTimeout: 1s }
listeners:
  - name: udp-all
    transport: udp
    tproxy: { port: ${TPROXY_PORT} }
    divert: { interface: ${farm.gateway.devs.attacker1} }
routes:
  - name: dns
    match: { protocol: [dns] }
    forward: docker-dns
  - capture: {}
backends:
  docker-dns:
    servers: ["${container.ip4}:53", "[${container.ip6}]:53"]
    source: transparent
events: { sqlite: ${dir}/events.db, batch: 50ms }
log: { level: info }
`,
    );
    gateway = startManagedGateway(farm, path.join(dir, 'honeygate.yaml'));
    await gateway.ready();
  });

  after(async () => {
    await gateway?.stop();
    engine?.stop();
    await farm?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(rootState(), rootBefore, 'the root namespace must be left as it was');
  });

  for (const family of [4, 6] as const) {
    test(`IPv${family}: dig to a decoy gets the container's answer; dnsmasq logs the attacker`, async () => {
      const a1 = farm.attacker1;
      const decoy = family === 4 ? farm.decoys.ip4 : farm.decoys.ip6;
      const src = family === 4 ? a1.ip4 : a1.ip6;
      const port = family === 4 ? 53 : 5355;
      // dig drops an answer from any other address or port ("reply from unexpected source")
      assert.equal(await dig(decoy, port, 'docker.test'), '192.0.2.9');
      const e = await waitFor(
        `the event of ${decoy}:${port}`,
        async () => (await events()).find((x) => x.dst.ip === decoy && x.dst.port === port),
        20_000,
        100,
      );
      assert.equal(e.transport, 'udp');
      assert.equal(e.src.ip, src);
      assert.equal(e.route, 'dns');
      assert.equal(e.sourceMode, 'transparent');
      assert.equal(e.server, family === 4 ? `${container.ip4}:53` : `[${container.ip6}]:53`);
      assert.equal(e.protocol, 'dns');
      assert.deepEqual(e.udp, { datagramsIn: 1, datagramsOut: 1, heldDatagrams: 0, heldBytes: 0 });
      // dnsmasq: "query[A] docker.test from 198.51.100.10"
      const line = `query[A] docker.test from ${src}`;
      await waitFor(
        `"${line}" in the container's log`,
        async () => (await dnsLog()).includes(line),
        10_000,
        100,
      );
    });
  }
});
