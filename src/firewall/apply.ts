// Puts the rendered ruleset and policy routing into the kernel, checks that they are still
// there, and takes them out again — in the current network namespace, touching nothing but
// `table inet honeygate` and the ip rule/route honeygate's own firewall settings name
// (pref + fwmark/mask + table). The tools are nft and ip (ss for sshd's ports).
import { spawn } from 'node:child_process';
import { readdir, readFile, readlink } from 'node:fs/promises';
import type { Config, FirewallConfig } from '../config/types.js';
import { type ContainTargets, resolveNetworks } from '../contain/docker.js';
import { HoneygateError } from '../errors.js';
import { hasKernelRoutes } from '../kernel/plan.js';
import type { ServerUp } from '../kernel/render.js';
import { type CtEntry, deleteArgs, divertsUdp, parseConntrack, staleUdp } from './conntrack.js';
import {
  commentOf,
  hasTable,
  type LiveTable,
  liveTable as liveTableOf,
  parseNftJson,
  readNftJson,
} from './nft-json.js';
import { diffLines } from './plan-diff.js';
import {
  deleteArgv,
  divertedListeners,
  divertPorts,
  FAMILY,
  formatRange,
  hex,
  type ProtectedPort,
  parseSshdListeners,
  planRuleset,
  protectedFrom,
  type RoutingEntry,
  renderRouting,
  renderRuleset,
  routingEntries,
  type SshdListener,
  TABLE,
} from './render.js';

// ---- running the tools ----------------------------------------------------------------

type Tool = 'nft' | 'ip' | 'ss' | 'conntrack' | 'sysctl';
const PACKAGE: Record<Tool, string> = {
  nft: 'nftables',
  ip: 'iproute2',
  ss: 'iproute2',
  conntrack: 'conntrack',
  sysctl: 'procps',
};

interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** What a finished (or unstartable) program left: `error` set when it could not be run. */
export interface Spawned {
  code: number | null;
  stdout: string;
  stderr: string;
  error?: NodeJS.ErrnoException;
}

/**
 * Runs a program to completion with `input` on stdin; never rejects. Shared by the firewall
 * verbs (which throw on failure) and doctor (which reports it).
 */
export function spawnCollect(
  file: string,
  args: string[],
  input?: string,
  opts: { env?: NodeJS.ProcessEnv; timeout?: number } = {},
): Promise<Spawned> {
  return new Promise((resolve) => {
    // Non-root shells often lack the sbin directories where Debian puts nft and ip.
    const PATH = [process.env.PATH, '/usr/sbin', '/sbin'].filter(Boolean).join(':');
    const child = spawn(file, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, PATH, ...opts.env },
      timeout: opts.timeout,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.stdin.on('error', () => {
      // the program exited before reading everything; its exit code and stderr say why
    });
    child.on('error', (error: NodeJS.ErrnoException) => resolve({ code: null, stdout, stderr, error }));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

/** Runs a program to completion and never rejects: the seam unit tests fill with a fake. */
export type Exec = (file: string, args: string[], input?: string) => Promise<Spawned>;

let exec: Exec = (file, args, input) => spawnCollect(file, args, input);

/** Runs this module's nft, ip and ss through `fake` until the returned function is called. */
export function useExec(fake: Exec): () => void {
  const previous = exec;
  exec = fake;
  return () => {
    exec = previous;
  };
}

/** Runs a tool to completion; a missing binary throws, a non-zero exit is returned. */
export async function runTool(tool: Tool, args: string[], input?: string): Promise<ToolResult> {
  const r = await exec(tool, args, input);
  const err = r.error;
  if (err?.code === 'ENOENT') {
    throw new HoneygateError(
      'HG_ERR_FIREWALL',
      `\`${tool}\` not found: install the Debian package ${PACKAGE[tool]} (apt-get install ${PACKAGE[tool]})`,
      { cause: err },
    );
  }
  if (err)
    throw new HoneygateError('HG_ERR_FIREWALL', `cannot run \`${tool}\`: ${err.message}`, { cause: err });
  return { code: r.code ?? 1, stdout: r.stdout, stderr: r.stderr };
}

/** Runs a tool and returns its stdout; a non-zero exit throws HG_ERR_FIREWALL with stderr's first lines. */
async function must(tool: Tool, args: string[], input?: string): Promise<string> {
  const r = await runTool(tool, args, input);
  if (r.code !== 0) throw toolError(tool, args, r);
  return r.stdout;
}

function toolError(tool: Tool, args: string[], r: ToolResult): HoneygateError {
  const lines = r.stderr.trim().split('\n').slice(0, 4).join(' | ');
  return new HoneygateError(
    'HG_ERR_FIREWALL',
    `\`${[tool, ...args].join(' ')}\` exited ${r.code}: ${lines || '(no message)'}`,
  );
}

/** Loads nft input in one transaction. */
export async function loadRuleset(text: string): Promise<void> {
  await must('nft', ['-f', '-'], text);
}

/** Deletes `table inet honeygate` if present; true when it was there. */
export async function deleteTable(): Promise<boolean> {
  if (!(await tableExists())) return false;
  await must('nft', ['delete', 'table', FAMILY, TABLE]);
  return true;
}

/** What kernel routes need of this namespace's conntrack (per namespace; doctor checks them). */
export const KERNEL_SYSCTLS = ['net.netfilter.nf_conntrack_acct=1', 'net.netfilter.nf_conntrack_timestamp=1'];

// ---- live state -----------------------------------------------------------------------

/** True when this namespace has `table inet honeygate`. */
export async function tableExists(): Promise<boolean> {
  const args = ['-j', 'list', 'tables', FAMILY];
  const rs = parseNftJson(await must('nft', args));
  if (!rs) throw notJson(args);
  return hasTable(rs, { family: FAMILY, name: TABLE });
}

/** `nft list table inet honeygate` as text (loadable by `nft -f`), or null when absent. */
export async function liveTable(): Promise<string | null> {
  if (!(await tableExists())) return null;
  return must('nft', ['list', 'table', FAMILY, TABLE]);
}

interface IpRule {
  priority?: number;
  src?: string;
  fwmark?: string;
  fwmask?: string;
  table?: string;
}

/** True when `r` is the rule honeygate adds: same pref, fwmark/mask and table, nothing else. */
export function isOurRule(r: IpRule, fw: FirewallConfig): boolean {
  if (r.priority !== fw.rulePriority || r.fwmark === undefined) return false;
  const mask = r.fwmask === undefined ? 0xffffffff : Number.parseInt(r.fwmask, 16);
  const keys = Object.keys(r).filter((k) => !['priority', 'src', 'fwmark', 'fwmask', 'table'].includes(k));
  return (
    Number.parseInt(r.fwmark, 16) === fw.mark &&
    mask === fw.mask &&
    r.table === String(fw.table) &&
    (r.src === undefined || r.src === 'all') &&
    keys.length === 0
  );
}

/** An IPv6 stack that is switched off has no rules or routes to find. */
function familyOff(r: ToolResult): boolean {
  return /Address family not supported/i.test(r.stderr);
}

/** How many copies of honeygate's ip rule this family has. */
export async function ourRules(fw: FirewallConfig, family: 4 | 6): Promise<number> {
  const args = [`-${family}`, '-N', '-j', 'rule', 'show'];
  const r = await runTool('ip', args);
  if (r.code !== 0) {
    if (familyOff(r)) return 0;
    throw toolError('ip', args, r);
  }
  const rules = JSON.parse(r.stdout || '[]') as IpRule[];
  return rules.filter((x) => isOurRule(x, fw)).length;
}

/** True when routing table fw.table holds `local default dev lo` for this family. */
export async function ourRoute(fw: FirewallConfig, family: 4 | 6): Promise<boolean> {
  const args = [`-${family}`, '-j', 'route', 'show', 'table', String(fw.table)];
  const r = await runTool('ip', args);
  if (r.code !== 0) {
    if (familyOff(r) || /table does not exist/i.test(r.stderr)) return false;
    throw toolError('ip', args, r);
  }
  const routes = JSON.parse(r.stdout || '[]') as { type?: string; dst?: string; dev?: string }[];
  return routes.some((x) => x.type === 'local' && x.dst === 'default' && x.dev === 'lo');
}

async function present(e: RoutingEntry, fw: FirewallConfig): Promise<boolean> {
  return e.kind === 'rule' ? (await ourRules(fw, e.family)) > 0 : ourRoute(fw, e.family);
}

/** honeygate's routing entries (for fw's settings, both families) that exist now. */
export async function liveRouting(fw: FirewallConfig): Promise<RoutingEntry[]> {
  const out: RoutingEntry[] = [];
  for (const family of [4, 6] as const)
    for (const e of routingEntries(fw, family)) if (await present(e, fw)) out.push(e);
  return out;
}

/** Adds `e` unless present; true when it was added. */
export async function addRouting(e: RoutingEntry, fw: FirewallConfig): Promise<boolean> {
  if (await present(e, fw)) return false;
  await must('ip', e.argv.slice(1));
  return true;
}

/** Deletes every copy of `e`; true when there was one. */
export async function deleteRouting(e: RoutingEntry, fw: FirewallConfig): Promise<boolean> {
  let removed = false;
  // Bounded: each round deletes one copy; a rule added twice by hand goes in two rounds.
  for (let i = 0; i < 16 && (await present(e, fw)); i++) {
    await must('ip', deleteArgv(e).slice(1));
    removed = true;
  }
  return removed;
}

// ---- lock-out protection --------------------------------------------------------------

/** The TCP listeners of sshd in this namespace ([] when there is none, or no ss). */
export async function sshdListeners(): Promise<SshdListener[]> {
  try {
    const [r, inodes] = await Promise.all([runTool('ss', ['-ltnHe']), sshdSocketInodes()]);
    return r.code === 0 ? parseSshdListeners(r.stdout, inodes) : [];
  } catch {
    return []; // no ss: fall back to port 22
  }
}

/**
 * The socket inodes sshd processes hold, from their /proc/PID/fd links. Not `ss -p`: it reads
 * every process's descriptors, 26-30 s on a host holding 100,000 sockets.
 */
export async function sshdSocketInodes(): Promise<Set<string>> {
  const out = new Set<string>();
  for (const pid of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if ((await readFile(`/proc/${pid}/comm`, 'utf8')).trim() !== 'sshd') continue;
      for (const fd of await readdir(`/proc/${pid}/fd`)) {
        const m = /^socket:\[(\d+)\]$/.exec(await readlink(`/proc/${pid}/fd/${fd}`).catch(() => ''));
        if (m) out.add(m[1]!);
      }
    } catch {
      // ended while we looked, or not ours to read
    }
  }
  return out;
}

/** The admin API's port and the ports sshd listens on here (22 when none is found), with reasons. */
export async function protectedPorts(config: Config): Promise<ProtectedPort[]> {
  return protectedFrom(config, await sshdListeners());
}

// ---- stale UDP conntrack entries ------------------------------------------------------

/** What the conntrack step of `apply` did; null when no UDP listener is diverted. */
export type ConntrackResult =
  | { deleted: CtEntry[]; failed: string[] } // failed: entries that could not be deleted, with why
  | { skipped: string }; // the step could not run (no conntrack tool, no permission)

/** The UDP entries of both families in this namespace's conntrack table. */
export async function listUdpConntrack(): Promise<CtEntry[]> {
  const out: CtEntry[] = [];
  for (const family of ['ipv4', 'ipv6']) {
    const args = ['-L', '-f', family, '-p', 'udp'];
    out.push(...parseConntrack(await must('conntrack', args)));
  }
  return out;
}

/**
 * Deletes the UDP conntrack entries that would keep datagrams to diverted ports away from
 * honeygate (conntrack.ts says which and why), one `conntrack -D` per entry so nothing
 * else goes. Never throws: without the tool the rules still work for new flows.
 */
export async function deleteStaleUdp(config: Config, prot: ProtectedPort[]): Promise<ConntrackResult | null> {
  if (!divertsUdp(config)) return null;
  let stale: CtEntry[];
  try {
    stale = staleUdp(config, prot, await listUdpConntrack());
  } catch (err) {
    return { skipped: `cannot look for stale UDP conntrack entries: ${(err as Error).message}` };
  }
  const deleted: CtEntry[] = [];
  const failed: string[] = [];
  for (const e of stale) {
    const r = await runTool('conntrack', deleteArgs(e)).catch((err: Error) => ({
      code: 1,
      stdout: '',
      stderr: err.message,
    }));
    // an entry that expired since the listing is gone too
    if (r.code === 0 || /such conntrack doesn't exist|0 flow entries/i.test(r.stderr)) deleted.push(e);
    else failed.push(`${e.src}:${e.sport} -> ${e.dst}:${e.dport}: ${r.stderr.trim().split('\n')[0]}`);
  }
  return { deleted, failed };
}

// ---- apply, remove, verify, show ------------------------------------------------------

export interface ApplyResult {
  ruleset: string; // what was loaded ('' when the config needs no table)
  protectedPorts: ProtectedPort[];
  added: RoutingEntry[]; // routing that was missing and is now there
  removed: RoutingEntry[]; // honeygate's routing for families the config no longer uses
  tableRemoved: boolean; // the config needs no table and an old one was deleted
  conntrack?: ConntrackResult | null; // stale UDP entries deleted after the rules went in
}

/**
 * Makes this namespace match the config: routing first (a mark without its route would
 * send diverted packets the wrong way), then the table in one `nft -f` transaction.
 */
export async function apply(
  config: Config,
  opts: { protectedPorts?: ProtectedPort[]; contain?: ContainTargets; up?: ServerUp } = {},
): Promise<ApplyResult> {
  const prot = opts.protectedPorts ?? (await protectedPorts(config));
  const contain = opts.contain ?? (await resolveNetworks(config.contain));
  const ruleset = renderRuleset(config, { protectedPorts: prot, contain, up: opts.up });
  const fw = config.firewall;
  const wanted = renderRouting(config, { protectedPorts: prot });
  const added: RoutingEntry[] = [];
  const removed: RoutingEntry[] = [];
  for (const family of [4, 6] as const) {
    const mine = routingEntries(fw, family);
    const want = wanted.some((e) => e.family === family);
    for (const e of mine) {
      if (want && (await addRouting(e, fw))) added.push(e);
      if (!want && (await deleteRouting(e, fw))) removed.push(e);
    }
  }
  let tableRemoved = false;
  if (ruleset) {
    try {
      await loadRuleset(ruleset);
    } catch (err) {
      // all or nothing: the routing this call added goes again (what it deleted was unused)
      for (const e of added.reverse()) await deleteRouting(e, fw).catch(() => false);
      throw err;
    }
  } else tableRemoved = await deleteTable();
  // Kernel routes: conntrack's DESTROY is their flow record; it needs byte counts and times.
  // After the table: its ct expressions load nf_conntrack, which owns these sysctls.
  if (ruleset && hasKernelRoutes(config)) for (const kv of KERNEL_SYSCTLS) await must('sysctl', ['-qw', kv]);
  // After the rules: an entry deleted before them could come back the old way.
  const conntrack = ruleset ? await deleteStaleUdp(config, prot) : null;
  // The rest is contained now; a network that is not must not pass unnoticed.
  if (contain.missing.length) {
    throw new HoneygateError(
      'HG_ERR_FIREWALL',
      `contain.networks: ${contain.missing.map((m) => `${m.name}: ${m.why}`).join('; ')} (the other honeypots are contained)`,
    );
  }
  return { ruleset, protectedPorts: prot, added, removed, tableRemoved, conntrack };
}

export interface RemoveResult {
  table: boolean; // the table was there and is gone
  routing: RoutingEntry[]; // routing entries deleted
}

/** Deletes the table, then the ip rules and routes for config.firewall's settings; nothing else. */
export async function remove(config: Config): Promise<RemoveResult> {
  return removeFor(config.firewall);
}

export async function removeFor(fw: FirewallConfig): Promise<RemoveResult> {
  const table = await deleteTable();
  const routing: RoutingEntry[] = [];
  for (const family of [4, 6] as const)
    for (const e of routingEntries(fw, family)) if (await deleteRouting(e, fw)) routing.push(e);
  return { table, routing };
}

/** honeygate's live table, read as JSON, with the comment from `text` (its text listing). */
async function readLiveTable(text: string): Promise<LiveTable> {
  const args = ['-j', 'list', 'table', FAMILY, TABLE];
  const rs = parseNftJson(await must('nft', args));
  if (!rs) throw notJson(args);
  return liveTableOf(rs, { family: FAMILY, name: TABLE }, commentOf(text));
}

function notJson(args: string[]): HoneygateError {
  return new HoneygateError(
    'HG_ERR_FIREWALL',
    `\`nft ${args.join(' ')}\` printed something that is not JSON`,
  );
}

/**
 * What is missing or different in this namespace compared with what `apply` would make
 * of the config; empty when all is in place. Detects a flushed ruleset, a table replaced
 * by another config's, deleted rules, chains or set elements, and deleted ip rules/routes.
 */
export async function verify(
  config: Config,
  opts: { protectedPorts?: ProtectedPort[]; contain?: ContainTargets } = {},
): Promise<string[]> {
  const prot = opts.protectedPorts ?? (await protectedPorts(config));
  const contain = opts.contain ?? (await resolveNetworks(config.contain));
  const plan = planRuleset(config, { protectedPorts: prot, contain });
  const fw = config.firewall;
  const text = await liveTable();
  // without a plan only the table's presence matters: no need to read its contents
  const live =
    text === null
      ? null
      : plan
        ? await readLiveTable(text)
        : liveTableOf(readNftJson(null), { family: FAMILY, name: TABLE }, commentOf(text));
  const problems = diffLines(plan, live);
  for (const e of renderRouting(config, { protectedPorts: prot })) {
    if (!(await present(e, fw))) problems.push(`missing: ${e.argv.join(' ')}`);
  }
  return problems;
}

/**
 * One line per tproxy listener without `divert`: honeygate diverts nothing to it, and what
 * the rules managed elsewhere must do for its connections to arrive.
 */
export function undivertedNotes(config: Config): string[] {
  const fw = config.firewall;
  return config.listeners.flatMap((l) => {
    const t = l.tproxy;
    if (!t || t.divert) return [];
    const to = t.addresses.map((host) => (host.includes(':') ? `[${host}]:${t.port}` : `${host}:${t.port}`));
    return [
      `listener ${l.name}: nothing is diverted to it (no divert:); honeygate only listens on ${to.join(' and ')}. ` +
        `Your own TPROXY rules must send its connections there and mark them, and an ip rule must route ` +
        `that mark to a table with a local default route (as honeygate's own: fwmark ${hex(fw.mark)}/${hex(fw.mask)} ` +
        `lookup ${fw.table}; local default dev lo table ${fw.table}). \`honeygate firewall doctor\` checks what it can see`,
    ];
  });
}

/** One line per UDP listener with divert: what goes to it, and the conntrack step of apply. */
export function udpNotes(config: Config, prot: ProtectedPort[]): string[] {
  return divertedListeners(config).flatMap((l) => {
    if (l.transport !== 'udp') return [];
    const t = l.tproxy;
    const ports = divertPorts(t.divert, prot).ports.map(formatRange).join(', ') || 'none';
    const to = t.addresses.map((host) => (host.includes(':') ? `[${host}]:${t.port}` : `${host}:${t.port}`));
    return [
      `listener ${l.name} (UDP): datagrams to UDP ports ${ports} go to ${to.join(' and ')}; ` +
        'apply also deletes UDP conntrack entries on these ports that another table NATed ' +
        '(they would keep going to the old place: moby/libnetwork#1994)',
    ];
  });
}

/** The report `firewall show` prints: what apply would load, then what this namespace has. */
export async function show(config: Config): Promise<string> {
  const prot = await protectedPorts(config);
  const contain = await resolveNetworks(config.contain);
  const ruleset = renderRuleset(config, { protectedPorts: prot, contain });
  const routing = renderRouting(config, { protectedPorts: prot });
  const fw = config.firewall;
  const lines: string[] = [];
  if (!ruleset) {
    const what = config.listeners.some((l) => l.tproxy)
      ? 'diverts nothing (no tproxy listener has divert:)'
      : 'has no tproxy listener';
    lines.push(`# the config ${what} and no transparent backend: honeygate needs no firewall rules`);
  } else {
    lines.push('# what `honeygate firewall apply` loads (nft -f -):', ruleset.trimEnd(), '');
    lines.push('# and the policy routing it adds when missing:', ...routing.map((e) => e.argv.join(' ')));
    for (const note of udpNotes(config, prot)) lines.push(`# ${note}`);
  }
  for (const note of undivertedNotes(config)) lines.push(`# ${note}`);
  lines.push('', '# live state in this network namespace:');
  const table = await liveTable();
  lines.push(table === null ? `# table ${FAMILY} ${TABLE}: absent` : table.trimEnd());
  const live = await liveRouting(fw);
  const ours = `pref ${fw.rulePriority} fwmark ${hex(fw.mark)}/${hex(fw.mask)} lookup ${fw.table}`;
  if (live.length === 0) lines.push(`# no ip rule ${ours}, no local route in table ${fw.table}`);
  for (const e of live) lines.push(`# present: ${e.argv.join(' ').replace(' add ', ' ')}`);
  const problems = await verify(config, { protectedPorts: prot, contain });
  lines.push(
    problems.length
      ? `# differences (run \`honeygate firewall apply\`):\n${problems.map((p) => `#   ${p}`).join('\n')}`
      : ruleset
        ? '# in place: the live state matches the config'
        : '',
  );
  return `${lines.join('\n').trimEnd()}\n`;
}
