// A real Docker Engine (Debian's docker.io) inside a test namespace, for the e2e tests and
// `honeygate demo`: the seed's situation, where Docker's own rules (DOCKER chains, DNAT of
// published ports, MASQUERADE, FORWARD policy DROP, docker-proxy) stand beside honeygate's.
//
// dockerd and containerd are entered into the namespace with `nsenter --net=` (not
// `ip netns exec`, which remounts /sys and hides the cgroup mounts dockerd needs). Everything
// they keep lives under one temp dir; the engine starts its own containerd (a system one, if
// running, would otherwise be shared) and files its containers under its own cgroup parent, so
// stop() can find and remove every trace: containers, processes, mounts, cgroups, dirs.
// No registry is reachable: images are a busybox-static rootfs fed to `docker import`.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { HoneygateError } from '../errors.js';
import { alive, command, type ExecResult, PLAN, stopProcesses, sync, type Topology } from './topology.js';

export const BUSYBOX_IMAGE = 'honeygate-test/busybox';

/**
 * The honeypot program baked into the busybox image as /bin/peer: run per connection by
 * `nc -ll -e` with the socket as stdin/stdout, it prints `peer IP:PORT` (the remote address it
 * accepted; IPv6 in brackets) and then echoes. Debian's busybox-static has no tcpsvd (which
 * would hand it $TCPREMOTEIP), so the peer is looked up by the socket's inode in /proc/net/tcp{,6}.
 */
const PEER_SCRIPT = String.raw`#!/bin/sh
ino=$(readlink /proc/self/fd/0)
ino=${'$'}{ino#socket:\[}
ino=${'$'}{ino%\]}
awk -v ino="$ino" '
function hex(s) { return ("0x" s) + 0 }
# /proc/net/tcp prints each 32-bit word of an address in host (little-endian) byte order.
function bytes(w) { return substr(w, 7, 2) substr(w, 5, 2) substr(w, 3, 2) substr(w, 1, 2) }
function dotted(b) { return hex(substr(b, 1, 2)) "." hex(substr(b, 3, 2)) "." hex(substr(b, 5, 2)) "." hex(substr(b, 7, 2)) }
function ip6(h,   b, i, g, best, bestlen, run, out) {
  b = bytes(substr(h, 1, 8)) bytes(substr(h, 9, 8)) bytes(substr(h, 17, 8)) bytes(substr(h, 25, 8))
  if (substr(b, 1, 24) == "00000000000000000000FFFF") return dotted(substr(b, 25, 8))
  best = 0; bestlen = 1; run = 0
  for (i = 1; i <= 8; i++) {
    g[i] = hex(substr(b, 4 * i - 3, 4))
    run = g[i] == 0 ? run + 1 : 0
    if (run > bestlen) { bestlen = run; best = i - run + 1 }
  }
  out = ""
  for (i = 1; i <= 8; i++) {
    if (best && i == best) { out = out "::"; i += bestlen - 1; continue }
    if (out != "" && substr(out, length(out)) != ":") out = out ":"
    out = out sprintf("%x", g[i])
  }
  return out
}
$10 == ino {
  split($3, a, ":")
  ip = length(a[1]) == 8 ? dotted(bytes(a[1])) : ip6(a[1])
  print "peer " (ip ~ /:/ ? "[" ip "]" : ip) ":" hex(a[2])
  exit
}' /proc/net/tcp /proc/net/tcp6
exec cat
`;

/**
 * argv of the echo-the-peer honeypot on `port` (both families), for runContainer. nc listens
 * with a backlog of 2: more connections at once than that wait for the kernel's SYN retries.
 */
export function peerEcho(port: number): string[] {
  return ['nc', '-ll', '-p', String(port), '-e', '/bin/peer'];
}

export interface DockerOptions {
  /** Parent of the engine's temp dir (default os.tmpdir()); the dir is removed by stop(). */
  tmpDir?: string;
  /** Docker's IPv6 on docker0 (--ipv6 --fixed-cidr-v6, and ip6tables rules as Docker >= 27 has); default true. */
  ipv6?: boolean;
  /** How long dockerd may take to answer on its socket (default 30 s). */
  startTimeoutMs?: number;
}

export interface Container {
  id: string;
  name: string;
  /** The container's main process, whose /proc/PID/ns/net is the container's namespace. */
  pid: number;
  ip4: string;
  ip6: string | null;
}

export interface RunOptions {
  /** `-p` values, e.g. '8080:80'. */
  publish?: string | string[];
  /** A user-defined network (see createNetwork); default Docker's bridge (docker0). */
  network?: string;
  /** A fixed address on that network (Docker allows it only on user-defined networks). */
  ip?: string;
  image?: string;
  /** Resolve only once something in the container listens on this TCP port. */
  waitPort?: number;
}

/** One TCP connection as `ss -tn` shows it in a container's namespace. */
export interface SocketPair {
  state: string;
  local: { host: string; port: number };
  peer: { host: string; port: number };
}

const CLI_TIMEOUT_MS = 30_000;
const POLL_MS = 50;

export class DockerEngine {
  /** The unix socket of the engine's API (`docker -H unix://SOCK`). */
  readonly sock: string;
  private readonly dataRoot: string;
  private readonly execRoot: string;
  private readonly containerdSock: string;
  private readonly cgroupParent: string;
  private readonly env: NodeJS.ProcessEnv;
  private readonly createdRunDocker: boolean;
  private containerd: ChildProcess | null = null;
  private dockerd: ChildProcess | null = null;
  private stopped = false;

  private constructor(
    readonly ns: string,
    readonly dir: string,
    readonly ipv6: boolean,
  ) {
    this.sock = path.join(dir, 'docker.sock');
    this.dataRoot = path.join(dir, 'data');
    this.execRoot = path.join(dir, 'exec');
    this.containerdSock = path.join(this.execRoot, 'containerd', 'containerd.sock');
    this.cgroupParent = `/${path.basename(dir)}`;
    // dockerd makes /run/docker/plugins whatever its roots; removed again only if it was ours.
    this.createdRunDocker = !fs.existsSync('/run/docker');
    const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_CONFIG: path.join(dir, 'cli') };
    for (const k of ['DOCKER_HOST', 'DOCKER_CONTEXT', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH']) delete env[k];
    // Debian keeps dockerd, docker-proxy and iptables in /usr/sbin, which a non-root PATH lacks.
    env.PATH = `${env.PATH ?? '/usr/bin:/bin'}:/usr/sbin:/sbin`;
    this.env = env;
  }

  /**
   * Starts containerd and dockerd inside `ns` (normally the farm's gateway) and waits for the
   * API. The topology's destroy() stops the engine first. Rejects with HG_ERR_DOCKER, after
   * cleaning up, when a binary is missing or the engine does not come up.
   */
  static async start(topology: Topology, ns: string, opts: DockerOptions = {}): Promise<DockerEngine> {
    const missing = dockerMissing();
    if (missing) throw new HoneygateError('HG_ERR_DOCKER', missing);
    const dir = fs.mkdtempSync(path.join(opts.tmpDir ?? os.tmpdir(), 'hgdocker-'));
    const engine = new DockerEngine(ns, dir, opts.ipv6 !== false);
    topology.onDestroy(() => engine.stop());
    try {
      await engine.boot(opts.startTimeoutMs ?? 30_000);
      return engine;
    } catch (err) {
      engine.stop();
      throw err;
    }
  }

  private async boot(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    fs.mkdirSync(path.dirname(this.containerdSock), { recursive: true });
    fs.writeFileSync(path.join(this.dir, 'containerd.toml'), this.containerdConfig());
    // Our own key file: dockerd would otherwise create /etc/docker/key.json; and our own config
    // file, so a host /etc/docker/daemon.json cannot change the engine.
    fs.writeFileSync(
      path.join(this.dir, 'daemon.json'),
      JSON.stringify({ 'deprecated-key-path': path.join(this.dir, 'key.json') }),
    );
    this.containerd = this.nsenter(
      ['containerd', '--config', path.join(this.dir, 'containerd.toml')],
      'containerd.log',
    );
    await this.until(
      deadline,
      'containerd to listen',
      () => connectable(this.containerdSock),
      this.containerd,
    );
    // biome-ignore format: one flag and its value per line
    const args = [
      'dockerd',
      '--config-file', path.join(this.dir, 'daemon.json'),
      '--containerd', this.containerdSock,
      '--data-root', this.dataRoot,
      '--exec-root', this.execRoot,
      '--pidfile', path.join(this.dir, 'dockerd.pid'),
      '-H', `unix://${this.sock}`,
      '--bip', PLAN.docker.bip,
      '--default-address-pool', PLAN.docker.pool,
      '--cgroup-parent', this.cgroupParent,
      // Containers are removed with -f before dockerd stops; this bounds the rest.
      '--shutdown-timeout', '2',
    ];
    if (this.ipv6) {
      args.push('--ipv6', '--fixed-cidr-v6', PLAN.docker.fixedCidrV6, '--experimental', '--ip6tables');
    }
    this.dockerd = this.nsenter(args, 'dockerd.log');
    await this.until(
      deadline,
      'dockerd to answer `docker version`',
      async () => (await this.cli(['version', '--format', '{{.Server.Version}}'], {}, 5_000)).code === 0,
      this.dockerd,
    );
  }

  private containerdConfig(): string {
    const root = path.join(this.dataRoot, 'containerd');
    const state = path.join(this.execRoot, 'containerd', 'state');
    // opt's default path is /opt/containerd: keep it under our root too.
    return [
      'version = 2',
      `root = ${JSON.stringify(root)}`,
      `state = ${JSON.stringify(state)}`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = ${JSON.stringify(this.containerdSock)}`,
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = ${JSON.stringify(path.join(root, 'opt'))}`,
      '',
    ].join('\n');
  }

  private nsenter(argv: string[], logName: string): ChildProcess {
    const log = fs.openSync(path.join(this.dir, logName), 'a');
    try {
      // Own process group: a Ctrl-C at the terminal must not stop the engine before its containers.
      const child = spawn('nsenter', [`--net=/var/run/netns/${this.ns}`, ...argv], {
        env: this.env,
        stdio: ['ignore', log, log],
        detached: true,
      });
      child.on('error', () => {}); // seen by until() as an early exit
      return child;
    } finally {
      fs.closeSync(log);
    }
  }

  /** Polls `ready` until it is true; rejects when `child` exits first or at the deadline. */
  private async until(
    deadline: number,
    what: string,
    ready: () => Promise<boolean>,
    child: ChildProcess,
  ): Promise<void> {
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
        throw new HoneygateError('HG_ERR_DOCKER', `waiting for ${what}: it exited\n${this.logTail()}`);
      }
      if (await ready()) return;
      if (Date.now() > deadline) {
        throw new HoneygateError('HG_ERR_DOCKER', `timed out waiting for ${what}\n${this.logTail()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  /** The last lines of both daemons' logs, for error messages. */
  logTail(lines = 15): string {
    return ['containerd.log', 'dockerd.log']
      .map((name) => {
        let text = '';
        try {
          text = fs.readFileSync(path.join(this.dir, name), 'utf8');
        } catch {
          return `${name}: (none)`;
        }
        return `${name}:\n${text.trimEnd().split('\n').slice(-lines).join('\n')}`;
      })
      .join('\n');
  }

  /** Runs the docker CLI against this engine; resolves whatever the exit status. */
  cli(
    args: string[],
    opts: { input?: Buffer | string } = {},
    timeoutMs = CLI_TIMEOUT_MS,
  ): Promise<ExecResult> {
    return run(['docker', '-H', `unix://${this.sock}`, ...args], this.env, opts.input, timeoutMs);
  }

  /** Like cli, but resolves to trimmed stdout and rejects with HG_ERR_DOCKER unless it exits 0. */
  async docker(args: string[], opts: { input?: Buffer | string } = {}): Promise<string> {
    const result = await this.cli(args, opts);
    if (result.code !== 0) {
      const status = result.code === null ? `killed by ${result.signal}` : `exit ${result.code}`;
      throw new HoneygateError(
        'HG_ERR_DOCKER',
        `docker ${args.join(' ')}: ${status}: ${result.stderr.trim()}`,
      );
    }
    return result.stdout.trim();
  }

  /**
   * Builds `tag` from the host's static busybox (Debian's busybox-static): one symlink per
   * applet, plus /bin/peer (see peerEcho). Takes well under a second.
   */
  async importBusybox(tag = BUSYBOX_IMAGE): Promise<void> {
    const busybox = staticBusybox();
    const rootfs = path.join(this.dir, 'rootfs');
    const bin = path.join(rootfs, 'bin');
    fs.mkdirSync(bin, { recursive: true });
    fs.mkdirSync(path.join(rootfs, 'tmp'), { mode: 0o1777 });
    fs.copyFileSync(busybox, path.join(bin, 'busybox'));
    fs.chmodSync(path.join(bin, 'busybox'), 0o755);
    const applets = sync([busybox, '--list'])
      .stdout.split('\n')
      .filter((a) => /^[\w.[-]+$/.test(a));
    for (const applet of applets) {
      if (applet !== 'busybox') fs.symlinkSync('busybox', path.join(bin, applet));
    }
    fs.writeFileSync(path.join(bin, 'peer'), PEER_SCRIPT, { mode: 0o755 });
    const tarFile = path.join(this.dir, 'rootfs.tar');
    const tar = await run(['tar', '-C', rootfs, '-cf', tarFile, '.'], this.env, undefined, CLI_TIMEOUT_MS);
    if (tar.code !== 0)
      throw new HoneygateError('HG_ERR_DOCKER', `tar of the busybox rootfs: ${tar.stderr.trim()}`);
    await this.docker(['import', '-', tag], { input: fs.readFileSync(tarFile) });
    fs.rmSync(rootfs, { recursive: true, force: true });
    fs.rmSync(tarFile, { force: true });
  }

  /** A user-defined bridge network (default subnet: PLAN.docker.firstNetwork, the free /26). */
  async createNetwork(name: string, subnet: string = PLAN.docker.firstNetwork): Promise<void> {
    await this.docker(['network', 'create', '--driver', 'bridge', '--subnet', subnet, name]);
  }

  /** `docker run -d` of argv in a new container; resolves once it runs (and listens, if asked). */
  async runContainer(name: string, argv: string[], opts: RunOptions = {}): Promise<Container> {
    const args = ['run', '-d', '--name', name];
    for (const p of [opts.publish ?? []].flat()) args.push('-p', p);
    if (opts.network) args.push('--network', opts.network);
    if (opts.ip) args.push('--ip', opts.ip);
    await this.docker([...args, opts.image ?? BUSYBOX_IMAGE, ...argv]);
    const container = await this.inspect(name);
    const deadline = Date.now() + 10_000;
    const netns = ['nsenter', `--net=/proc/${container.pid}/ns/net`];
    const check = async (what: string, argv2: string[], ok: (out: string) => boolean) => {
      for (;;) {
        const r = await run([...netns, ...argv2], this.env, undefined, 5_000);
        if (r.code === 0 && ok(r.stdout)) return;
        if (Date.now() > deadline) {
          const logs = await this.cli(['logs', '--tail', '20', name]);
          throw new HoneygateError(
            'HG_ERR_DOCKER',
            `container ${name}: timed out waiting for ${what}\n${logs.stdout}${logs.stderr}`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
    };
    // The container's namespace is Docker's, made with DAD on: its IPv6 address is tentative for a moment.
    if (container.ip6)
      await check('IPv6 DAD', ['ip', '-6', 'addr', 'show', 'tentative'], (out) => out.trim() === '');
    if (opts.waitPort) {
      await check(
        `a listener on port ${opts.waitPort}`,
        ['ss', '-tlnH', `sport = :${opts.waitPort}`],
        (out) => out.trim() !== '',
      );
    }
    return container;
  }

  /** The container's id, main pid and addresses. */
  async inspect(name: string): Promise<Container> {
    const info = JSON.parse(await this.docker(['inspect', '--type', 'container', name]))[0];
    const pid: number = info.State.Pid;
    if (!info.State.Running || !pid) {
      const logs = await this.cli(['logs', '--tail', '20', name]);
      throw new HoneygateError(
        'HG_ERR_DOCKER',
        `container ${name} is not running (exit ${info.State.ExitCode})\n${logs.stdout}${logs.stderr}`,
      );
    }
    const nets = Object.values(info.NetworkSettings.Networks ?? {}) as Array<{
      IPAddress: string;
      GlobalIPv6Address: string;
    }>;
    return {
      id: info.Id,
      name,
      pid,
      ip4: nets[0]?.IPAddress ?? '',
      ip6: nets[0]?.GlobalIPv6Address || null,
    };
  }

  /** The container's main pid: `nsenter --net=/proc/PID/ns/net` enters its namespace. */
  async containerPid(name: string): Promise<number> {
    return (await this.inspect(name)).pid;
  }

  /**
   * The TCP connections (any state but LISTEN) in the container's namespace, as `ss -tn` shows
   * them: what the honeypot accepted and from which peer. IPv4-mapped addresses come back as IPv4.
   */
  async peers(name: string): Promise<SocketPair[]> {
    const { pid } = await this.inspect(name);
    const r = await run(['nsenter', `--net=/proc/${pid}/ns/net`, 'ss', '-tnH'], this.env, undefined, 5_000);
    if (r.code !== 0)
      throw new HoneygateError('HG_ERR_DOCKER', `ss in container ${name}: ${r.stderr.trim()}`);
    return r.stdout
      .split('\n')
      .map((line) => line.trim().split(/\s+/))
      .filter((f) => f.length >= 5)
      .map((f) => ({ state: f[0]!, local: endpoint(f[3]!), peer: endpoint(f[4]!) }));
  }

  /**
   * Removes every container, stops dockerd then containerd (SIGTERM, bounded wait, SIGKILL),
   * kills anything left in the engine's cgroups, unmounts what the engine left under its dir and
   * removes the dir and cgroups. Synchronous (it also runs from an 'exit' handler), idempotent,
   * never throws.
   */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.dockerd?.pid !== undefined && alive(this.dockerd.pid)) {
      const docker = ['docker', '-H', `unix://${this.sock}`];
      const ids = sync([...docker, 'ps', '-aq'], 10_000, this.env)
        .stdout.split('\n')
        .filter(Boolean);
      // -f kills at once: a busybox PID 1 ignores SIGTERM, and `docker stop` would wait out its timeout.
      if (ids.length) sync([...docker, 'rm', '-f', '-v', ...ids], 20_000, this.env);
    }
    for (const [child, graceMs] of [
      [this.dockerd, 10_000],
      [this.containerd, 5_000],
    ] as const) {
      if (child?.pid !== undefined) stopProcesses([child.pid], graceMs);
    }
    // Shims (and with them containers) outlive a containerd that was killed, not stopped.
    const leftovers = [...pidsByCmdline(this.execRoot), ...this.cgroupPids()];
    if (leftovers.length) stopProcesses(leftovers, 0);
    for (const mount of mountsUnder(this.dir)) {
      if (sync(['umount', mount]).code !== 0) sync(['umount', '-l', mount]);
    }
    try {
      fs.rmSync(this.dir, { recursive: true, force: true });
    } catch (err) {
      process.stderr.write(`honeygate docker: cannot remove ${this.dir}: ${(err as Error).message}\n`);
    }
    this.removeCgroups();
    if (this.createdRunDocker) {
      for (const dir of ['/run/docker/plugins', '/run/docker']) {
        try {
          fs.rmdirSync(dir); // only when empty: another engine may be using it
        } catch {
          // not ours to remove, or already gone
        }
      }
    }
  }

  /** Every pid in any cgroup hierarchy under this engine's cgroup parent. */
  private cgroupPids(): number[] {
    const pids: number[] = [];
    for (const dir of this.cgroupDirs()) {
      try {
        for (const line of fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n')) {
          if (Number(line) > 0) pids.push(Number(line));
        }
      } catch {
        // gone meanwhile
      }
    }
    return pids;
  }

  private removeCgroups(): void {
    // Deepest first: a cgroup is removed with rmdir, and only once it has no children.
    for (const dir of this.cgroupDirs().sort((a, b) => b.length - a.length)) {
      try {
        fs.rmdirSync(dir);
      } catch {
        // still busy or gone
      }
    }
  }

  /** The engine's cgroup parent and its descendants in every mounted hierarchy (v1 and v2). */
  private cgroupDirs(): string[] {
    const out: string[] = [];
    const walk = (dir: string) => {
      let entries: fs.Dirent[];
      try {
        entries = fs.readdirSync(dir, { withFileTypes: true });
      } catch {
        return;
      }
      out.push(dir);
      for (const e of entries) if (e.isDirectory()) walk(path.join(dir, e.name));
    };
    for (const root of cgroupRoots()) walk(path.join(root, this.cgroupParent));
    return out;
  }
}

// ---- helpers --------------------------------------------------------------------------------

/** null when dockerd, containerd, the docker CLI and nsenter are installed, else what is missing. */
export function dockerMissing(): string | null {
  const absent = ['dockerd', 'containerd', 'docker', 'nsenter'].filter((bin) => !onPath(bin));
  if (absent.length === 0) return null;
  return `${absent.join(', ')} not installed (apt-get install docker.io)`;
}

function onPath(bin: string): boolean {
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/sbin', '/sbin'];
  return dirs.some((dir) => {
    try {
      fs.accessSync(path.join(dir, bin), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** The path of a statically linked busybox (no ELF interpreter), or HG_ERR_DOCKER. */
export function staticBusybox(): string {
  for (const file of ['/bin/busybox', '/usr/bin/busybox', '/usr/local/bin/busybox']) {
    let elf: Buffer;
    try {
      elf = fs.readFileSync(file);
    } catch {
      continue;
    }
    // 64-bit little-endian ELF: program headers at e_phoff, e_phnum entries of e_phentsize.
    if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) continue;
    const phoff = Number(elf.readBigUInt64LE(0x20));
    const phentsize = elf.readUInt16LE(0x36);
    const phnum = elf.readUInt16LE(0x38);
    let dynamic = false;
    for (let i = 0; i < phnum; i++)
      if (elf.readUInt32LE(phoff + i * phentsize) === 3 /* PT_INTERP */) dynamic = true;
    if (!dynamic) return file;
  }
  throw new HoneygateError(
    'HG_ERR_DOCKER',
    'no statically linked busybox found (apt-get install busybox-static)',
  );
}

function cgroupRoots(): string[] {
  return fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' '))
    .filter((f) => f[2] === 'cgroup' || f[2] === 'cgroup2')
    .map((f) => unescapeMount(f[1]!));
}

/** Mount points at or below `dir`, deepest first. */
export function mountsUnder(dir: string): string[] {
  return fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((line) => unescapeMount(line.split(' ')[1] ?? ''))
    .filter((mp) => mp === dir || mp.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/** Pids whose command line mentions `text` (the shims name containerd's socket under our exec root). */
function pidsByCmdline(text: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text)) pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids.filter((pid) => pid !== process.pid);
}

function connectable(sock: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(sock);
    s.on('error', () => resolve(false));
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
  });
}

/** "[::ffff:198.51.100.10]:4444" / "192.0.2.130:80" / "[2001:db8::1]:80" -> { host, port }. */
function endpoint(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  let host = s.slice(0, i).replace(/^\[|\]$/g, '');
  if (host.startsWith('::ffff:') && net.isIPv4(host.slice(7))) host = host.slice(7);
  return { host, port: Number(s.slice(i + 1)) };
}

function run(
  argv: string[],
  env: NodeJS.ProcessEnv,
  input: Buffer | string | undefined,
  timeoutMs: number,
): Promise<ExecResult> {
  return command(argv, { env, timeoutMs, ...(input === undefined ? {} : { input }) }, 'HG_ERR_DOCKER');
}
