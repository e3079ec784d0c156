// Throw-away networks of Linux network namespaces joined by veth pairs, for the e2e tests
// and `honeygate demo`. Everything lives in namespaces named `hg<pid36><rand>-<role>`;
// both ends of every veth are created inside them (`ip -n NS link add ... peer ... netns`),
// so the root namespace's interfaces, routes, rules and sysctls are never touched.
//
// The farm's address plan (documentation ranges only, as PRODUCT.md's test rules ask):
//
//   198.51.100.0/24  2001:db8:a::/64  attacker1 link: gateway att1 .1 / ::1, attacker1 eth0 .10 / ::10
//   203.0.113.0/24   2001:db8:b::/64  attacker2 link: gateway att2 .1 / ::1, attacker2 eth0 .10 / ::10
//   192.0.2.0/26                      left free: the first subnet Docker's default-address-pool
//                                     (base=192.0.2.0/24,size=26) hands to a user-defined network
//   192.0.2.64/27    2001:db8:d::/64  decoys: addresses the attackers aim at, routed to the gateway
//                                     by their default route; nothing owns them (TPROXY takes them)
//   192.0.2.96/27    2001:db8:c::/64  honeypot-host link: gateway hp0 .97 / ::1, honeypot eth0 .100 / ::10
//   192.0.2.128/25   2001:db8:e::/64  docker0 in the gateway (--bip 192.0.2.129/25, --fixed-cidr-v6)
//
// Docker's bip and pool (fixed by PRODUCT.md) cover the whole /24, so the honeypot-host link and
// the decoys sit in the /26 Docker would only hand out to a second user-defined network: make at
// most one (docker.ts's FIRST_NETWORK is that free /26).
import { type ChildProcess, type SpawnOptions, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { HoneygateError } from '../errors.js';

/** A link to the gateway: its subnets, the gateway's and the host's addresses. */
export interface LinkPlan {
  net4: string;
  net6: string;
  gw4: string;
  gw6: string;
  ip4: string;
  ip6: string;
}

/** The farm's fixed addresses (see the plan above). */
export const PLAN = {
  attacker1: {
    net4: '198.51.100.0/24',
    net6: '2001:db8:a::/64',
    gw4: '198.51.100.1',
    gw6: '2001:db8:a::1',
    ip4: '198.51.100.10',
    ip6: '2001:db8:a::10',
  },
  attacker2: {
    net4: '203.0.113.0/24',
    net6: '2001:db8:b::/64',
    gw4: '203.0.113.1',
    gw6: '2001:db8:b::1',
    ip4: '203.0.113.10',
    ip6: '2001:db8:b::10',
  },
  honeypot: {
    net4: '192.0.2.96/27',
    net6: '2001:db8:c::/64',
    gw4: '192.0.2.97',
    gw6: '2001:db8:c::1',
    ip4: '192.0.2.100',
    ip6: '2001:db8:c::10',
  },
  decoys: { net4: '192.0.2.64/27', net6: '2001:db8:d::/64', ip4: '192.0.2.74', ip6: '2001:db8:d::74' },
  docker: {
    bip: '192.0.2.129/25',
    pool: 'base=192.0.2.0/24,size=26',
    fixedCidrV6: '2001:db8:e::/64',
    firstNetwork: '192.0.2.0/26',
  },
} as const;

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Written to the command's stdin, which is then closed. */
  input?: string | Buffer;
  /** Killed (SIGKILL) and rejected after this long; default 10 s. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

/** One end of a veth pair: an interface name inside a namespace. */
export interface End {
  ns: string;
  dev: string;
}

const DEFAULT_TIMEOUT_MS = 10_000;
// Every ip(8) call in the teardown, which must finish even when something hangs.
const TEARDOWN_CALL_MS = 5_000;
const TERM_GRACE_MS = 2_000;

/**
 * A set of namespaces, veth pairs and processes that `destroy()` removes again. Build it with
 * the methods below (each awaits its ip(8) call), or use `buildFarm()` for the standard layout.
 */
export class Topology {
  /** The prefix of every namespace name: `hg` + pid (base 36) + 4 random hex digits. */
  readonly id: string;
  private readonly namespaces: string[] = [];
  private readonly veths: End[] = [];
  private readonly children = new Set<ChildProcess>();
  private readonly cleanups: Array<() => void> = [];
  private destroyed = false;

  constructor(prefix = 'hg') {
    this.id = `${prefix}${process.pid.toString(36)}${randomBytes(2).toString('hex')}`;
  }

  /** Creates the namespace `<id>-<role>` with lo up and IPv6 DAD off, and returns its name. */
  async namespace(role: string): Promise<string> {
    this.assertLive();
    const ns = `${this.id}-${role}`;
    // Recorded once it exists (a name taken by someone else must not be deleted); every later
    // step may fail and leave it half-made: destroy() still removes it.
    await this.must(['ip', 'netns', 'add', ns]);
    this.namespaces.push(ns);
    await this.ip(ns, ['link', 'set', 'lo', 'up']);
    // Interfaces made later in this namespace inherit `default`: their link-local and
    // global IPv6 addresses are usable at once instead of after a second of DAD.
    await this.sysctl(ns, 'net.ipv6.conf.default.accept_dad', '0');
    await this.sysctl(ns, 'net.ipv6.conf.all.accept_dad', '0');
    return ns;
  }

  /** Joins two namespaces with a veth pair created inside `a.ns` and brings both ends up. */
  async veth(a: End, b: End): Promise<void> {
    this.assertLive();
    this.veths.push(a);
    await this.ip(a.ns, ['link', 'add', a.dev, 'type', 'veth', 'peer', 'name', b.dev, 'netns', b.ns]);
    await this.ip(a.ns, ['link', 'set', a.dev, 'up']);
    await this.ip(b.ns, ['link', 'set', b.dev, 'up']);
  }

  /** Adds `cidr` (v4 or v6; v6 with nodad, usable at once) to `dev` in `ns`. */
  async address(ns: string, dev: string, cidr: string): Promise<void> {
    const v6 = cidr.includes(':');
    await this.ip(ns, [...(v6 ? ['-6'] : []), 'addr', 'add', cidr, 'dev', dev, ...(v6 ? ['nodad'] : [])]);
  }

  /** Adds a route to `dst` ('default' or a CIDR) via `via` in `ns`. */
  async route(ns: string, dst: string, via: string): Promise<void> {
    await this.ip(ns, [...(via.includes(':') ? ['-6'] : []), 'route', 'add', dst, 'via', via]);
  }

  /**
   * Sets a sysctl inside `ns` only. Only net.* keys: they are per namespace, and /proc/sys/net
   * shows the namespace of the process that opens it, here the one `ip netns exec` entered.
   */
  async sysctl(ns: string, key: string, value: string): Promise<void> {
    if (!/^net\.[\w.-]+$/.test(key)) {
      throw new HoneygateError('HG_ERR_NETNS', `sysctl ${key}: only net.* keys are per namespace`);
    }
    const file = `/proc/sys/${key.replaceAll('.', '/')}`;
    await this.run(ns, ['sh', '-c', 'printf "%s\\n" "$1" > "$2"', 'sh', value, file]);
  }

  /** Reads a net.* sysctl inside `ns`. */
  async readSysctl(ns: string, key: string): Promise<string> {
    return (await this.run(ns, ['cat', `/proc/sys/${key.replaceAll('.', '/')}`])).trim();
  }

  /** `ip -n NS ARGS...`; resolves to its stdout, rejects with HG_ERR_NETNS on failure. */
  ip(ns: string, args: string[]): Promise<string> {
    return this.must(['ip', '-n', ns, ...args]);
  }

  /** Runs argv inside `ns` (`ip netns exec`); resolves whatever the exit status. */
  exec(ns: string, argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    return command(['ip', 'netns', 'exec', ns, ...argv], opts);
  }

  /** Like exec, but resolves to stdout and rejects with HG_ERR_NETNS unless it exits 0. */
  async run(ns: string, argv: string[], opts: ExecOptions = {}): Promise<string> {
    const result = await this.exec(ns, argv, opts);
    if (result.code !== 0) throw failed(`ip netns exec ${ns} ${argv.join(' ')}`, result);
    return result.stdout;
  }

  /**
   * Starts argv inside `ns` in its own process group; destroy() ends the group (SIGTERM,
   * then SIGKILL). A spawn failure is kept on the child's 'error' event, never thrown.
   */
  spawn(ns: string, argv: string[], opts: SpawnOptions = {}): ChildProcess {
    this.assertLive();
    const child = spawn('ip', ['netns', 'exec', ns, ...argv], { ...opts, detached: true });
    child.on('error', () => {}); // the caller's listener reports it; this one keeps it from throwing
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Registers a synchronous teardown step run first by destroy() (last registered runs first). */
  onDestroy(fn: () => void): void {
    this.cleanups.push(fn);
  }

  /** destroySync() for callers that await: the teardown is synchronous so that it also works at exit. */
  async destroy(): Promise<void> {
    this.destroySync();
  }

  /**
   * Ends every spawned process, runs the onDestroy steps, kills whatever still runs in the
   * namespaces, deletes the veths and the namespaces. Idempotent and safe on a half-built
   * topology; it never throws (teardown problems go to stderr).
   */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const fn of this.cleanups.splice(0).reverse()) {
      try {
        fn();
      } catch (err) {
        process.stderr.write(`honeygate netns: teardown step failed: ${(err as Error).message}\n`);
      }
    }
    stopGroups([...this.children].map((c) => c.pid).filter((pid): pid is number => pid !== undefined));
    this.children.clear();
    for (const ns of this.namespaces) {
      // Processes not spawned here (a daemon's helpers, a shell's children) would keep the
      // namespace and its veths alive after `ip netns del`.
      const pids = sync(['ip', 'netns', 'pids', ns])
        .stdout.split('\n')
        .map(Number)
        .filter((pid) => pid > 0);
      stopProcesses(pids, 0);
    }
    for (const end of this.veths.splice(0).reverse()) sync(['ip', '-n', end.ns, 'link', 'del', end.dev]);
    for (const ns of this.namespaces.splice(0).reverse()) sync(['ip', 'netns', 'del', ns]);
  }

  /**
   * Calls destroySync() at process exit and on SIGINT, SIGTERM and SIGHUP (then re-raises the
   * signal, so the process still ends as it would have). Returns a function that removes the hooks.
   */
  destroyOnExit(): () => void {
    const onExit = () => this.destroySync();
    const onSignal = (signal: NodeJS.Signals) => {
      this.destroySync();
      remove();
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    const remove = () => {
      process.off('exit', onExit);
      for (const s of signals) process.off(s, onSignal);
    };
    process.on('exit', onExit);
    for (const s of signals) process.on(s, onSignal);
    return remove;
  }

  private assertLive(): void {
    if (this.destroyed) throw new HoneygateError('HG_ERR_NETNS', `topology ${this.id} was destroyed`);
  }

  private async must(argv: string[]): Promise<string> {
    const result = await command(argv);
    if (result.code !== 0) throw failed(argv.join(' '), result);
    return result.stdout;
  }
}

// ---- the standard farm ------------------------------------------------------------------

/** A host's side of its link to the gateway. */
export interface Host {
  ns: string;
  dev: string;
  ip4: string;
  ip6: string;
  /** The gateway's addresses on this link (the host's default routes). */
  gw4: string;
  gw6: string;
}

export interface Farm {
  topology: Topology;
  attacker1: Host;
  attacker2: Host;
  /** Present when buildFarm was asked for a honeypot host. */
  honeypot: Host | null;
  gateway: {
    ns: string;
    /** The gateway's interface names toward each neighbour. */
    devs: { attacker1: 'att1'; attacker2: 'att2'; honeypot: 'hp0' };
  };
  /** Addresses nobody owns that the attackers route to the gateway. */
  decoys: typeof PLAN.decoys;
  destroy(): Promise<void>;
}

export interface FarmOptions {
  /** Also build a honeypot host behind the gateway's hp0. */
  honeypotHost?: boolean;
  /** Call destroy() on exit and on SIGINT/SIGTERM/SIGHUP (default true). */
  destroyOnExit?: boolean;
}

/**
 * Builds the standard farm: attacker1 and attacker2 routed through the gateway (ip_forward on,
 * v4 and v6), and optionally a honeypot host behind it, all per PLAN. On failure the half-built
 * farm is removed before the error is rethrown.
 */
export async function buildFarm(opts: FarmOptions = {}): Promise<Farm> {
  const topology = new Topology();
  const removeHooks = opts.destroyOnExit === false ? () => {} : topology.destroyOnExit();
  try {
    const gw = await topology.namespace('gw');
    await topology.sysctl(gw, 'net.ipv4.ip_forward', '1');
    await topology.sysctl(gw, 'net.ipv6.conf.all.forwarding', '1');
    const host = async (role: string, gwDev: string, plan: LinkPlan): Promise<Host> => {
      const ns = await topology.namespace(role);
      const prefix4 = plan.net4.split('/')[1];
      const prefix6 = plan.net6.split('/')[1];
      await topology.veth({ ns: gw, dev: gwDev }, { ns, dev: 'eth0' });
      await topology.address(gw, gwDev, `${plan.gw4}/${prefix4}`);
      await topology.address(gw, gwDev, `${plan.gw6}/${prefix6}`);
      await topology.address(ns, 'eth0', `${plan.ip4}/${prefix4}`);
      await topology.address(ns, 'eth0', `${plan.ip6}/${prefix6}`);
      await topology.route(ns, 'default', plan.gw4);
      await topology.route(ns, 'default', plan.gw6);
      return { ns, dev: 'eth0', ip4: plan.ip4, ip6: plan.ip6, gw4: plan.gw4, gw6: plan.gw6 };
    };
    // The hosts at once: each step is an `ip` process, and the hosts do not depend on one another.
    const [attacker1, attacker2, honeypot] = await Promise.all([
      host('att1', 'att1', PLAN.attacker1),
      host('att2', 'att2', PLAN.attacker2),
      opts.honeypotHost ? host('hp', 'hp0', PLAN.honeypot) : null,
    ]);
    return {
      topology,
      attacker1,
      attacker2,
      honeypot,
      gateway: { ns: gw, devs: { attacker1: 'att1', attacker2: 'att2', honeypot: 'hp0' } },
      decoys: PLAN.decoys,
      destroy: async () => {
        topology.destroySync();
        removeHooks();
      },
    };
  } catch (err) {
    topology.destroySync();
    removeHooks();
    throw err;
  }
}

// ---- processes ----------------------------------------------------------------------------

/**
 * Runs argv (no shell) with opts.input on stdin; resolves whatever the exit status. Rejects with
 * `code` only when it cannot start or outlives opts.timeoutMs (then it is killed).
 */
export function command(
  argv: string[],
  opts: ExecOptions = {},
  code: 'HG_ERR_NETNS' | 'HG_ERR_DOCKER' = 'HG_ERR_NETNS',
): Promise<ExecResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { env: opts.env ?? process.env, stdio: 'pipe' });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.stdin.on('error', () => {}); // EPIPE when the command exits without reading its input
    child.stdin.end(opts.input ?? '');
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new HoneygateError(code, `${argv.join(' ')}: no exit within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('error', (cause) => {
      clearTimeout(timer);
      reject(new HoneygateError(code, `${argv[0]}: ${cause.message}`, { cause }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
      });
    });
  });
}

function failed(what: string, result: ExecResult): HoneygateError {
  const status = result.code === null ? `killed by ${result.signal}` : `exit ${result.code}`;
  const detail = result.stderr.trim() || result.stdout.trim();
  return new HoneygateError('HG_ERR_NETNS', `${what}: ${status}${detail ? `: ${detail}` : ''}`);
}

/** A bounded synchronous call for teardown paths (which also run inside an 'exit' handler). */
export function sync(
  argv: string[],
  timeoutMs = TEARDOWN_CALL_MS,
  env: NodeJS.ProcessEnv = process.env,
): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(argv[0]!, argv.slice(1), {
    encoding: 'utf8',
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
    env,
  });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? r.error?.message ?? '' };
}

/** Blocks for `ms`: the poll interval of the synchronous teardown waits, nothing more. */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** True while `pid` exists and is not a zombie (a zombie is dead, only not yet reaped). */
export function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/**
 * SIGTERM to each pid, up to `graceMs` for them to go, then SIGKILL and up to 2 s more.
 * Returns the pids still alive after that (normally none).
 */
export function stopProcesses(
  pids: number[],
  graceMs = TERM_GRACE_MS,
  kill = (pid: number, s: NodeJS.Signals) => process.kill(pid, s),
): number[] {
  const signal = (s: NodeJS.Signals) => {
    for (const pid of pids) {
      try {
        kill(pid, s);
      } catch {
        // already gone
      }
    }
  };
  const waitGone = (ms: number) => {
    const deadline = Date.now() + ms;
    while (pids.some(alive) && Date.now() < deadline) sleepSync(20);
  };
  if (graceMs > 0) {
    signal('SIGTERM');
    waitGone(graceMs);
  }
  signal('SIGKILL');
  waitGone(2_000);
  return pids.filter(alive);
}

/** stopProcesses for process-group leaders: each signal goes to the whole group. */
function stopGroups(pids: number[]): void {
  stopProcesses(pids, TERM_GRACE_MS, (pid, s) => process.kill(-pid, s));
}
