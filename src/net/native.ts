// The typed surface of the native addon (native/honeygate.cc), and the only module that
// loads it. The addon does only what Node cannot: create TCP sockets with IP_TRANSPARENT,
// SO_MARK and SO_REUSEPORT and hand back the fd, and read SO_ORIGINAL_DST. Node adopts the
// fd: a listener with `server.listen({ fd })`, an upstream with openUpstream() below.
//
// The addon loads on first use, so importing this module never fails; nativeAvailable()
// says whether it can load and, if not, every path tried.

import { closeSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { HoneygateError } from '../errors.js';
import type { CloseReason } from '../events/event.js';

export interface SocketOptions {
  transparent?: boolean;
  mark?: number; // SO_MARK; 0 or absent leaves it unset
  reusePort?: boolean;
}

interface Addon {
  listenSocket(host: string, port: number, opts: SocketOptions & { backlog?: number }): number;
  upstreamSocket(family: 4 | 6, opts: SocketOptions): number;
  udpSocket(host: string, port: number, opts: UdpSocketOptions): number;
  udpConnect(fd: number, host: string, port: number): void;
  UdpPort: new (
    fd: number,
    onBatch: (numbers?: Float64Array, hosts?: string[], payload?: Buffer) => void,
    addresses?: boolean,
  ) => NativeUdpPort;
  ConntrackReader: new (opts: { mark: number; rcvbuf: number }, onBatch: ConntrackBatch) => ConntrackReader;
  originalDst(fd: number): { host: string; port: number } | null;
  socketName(fd: number): { host: string; port: number };
  idleThread(): number;
  Relay: new (onRecords: RelayRecords, counters: Float64Array, dial: Float64Array) => NativeRelay;
  relayRecords: RelayBoundary['records'];
  relayListen: RelayBoundary['listen'];
  relayDial: RelayBoundary['dial'];
  relayCloseReasons: CloseReason[];
  dropPrivileges(target: { uid: number; gid: number; groups: number[]; keep: number[] }): void;
  privileges(): ThreadPrivileges;
}

/**
 * The native relay (native/relay.cc over native/relay_core.cc): accept, connect and copy
 * off the JS heap. See src/gateway/relay.ts.
 */
export interface NativeRelay {
  /** Accepts on fd (non-blocking from now on; closed by unlisten). flags: relayBoundary().listen. */
  listen(fd: number, tag: number, flags: number): void;
  unlisten(tag: number): void;
  /**
   * Starts dialing host for a waiting flow, from localIp when not null, sending header
   * first. The numbers (port, caps, ...) are read from the dial spec given to createRelay(),
   * written just before at relayBoundary().dial's indexes. Undefined, or why it could not start.
   */
  forward(id: number, host: string, localIp: string | null, header: Buffer | null): string | undefined;
  /** The attacker's fd of a waiting flow, now the caller's; -1 when there is none. */
  take(id: number): number;
  /** A waiting flow on a dup of fd (the caller closes its own); a negative errno on failure. */
  adopt(fd: number): number;
  close(id: number, reset?: boolean): void;
  /** Writes bytesIn, bytesOut into the counters array; false when the flow is gone. */
  counters(id: number): boolean;
  /** The attacker's first bytes so far (a copy), or null. */
  firstBytes(id: number): Buffer | null;
  destroy(): void;
}

/** native/boundary.h's tables, as the addon exports them. */
export interface RelayBoundary {
  /** Record tags: a record's first number. */
  records: { accepted: number; dialed: number; dialFailed: number; finished: number; acceptFailed: number };
  /** listen()'s flags: local reports getsockname() as dst, originalDst SO_ORIGINAL_DST. */
  listen: { local: number; originalDst: number };
  /** forward()'s numbers: their indexes in the dial spec, and its length. */
  dial: {
    port: number;
    localPort: number;
    transparent: number; // 1: IP_TRANSPARENT
    mark: number; // SO_MARK; 0: unset
    timeoutMs: number;
    firstCap: number; // the attacker's first bytes to keep
    maxIn: number; // 0: no cap
    maxOut: number;
    length: number;
  };
  /** Record 4's close reason by its code (test/unit/native.test.ts checks they are CloseReasons). */
  closeReasons: readonly CloseReason[];
}

/** The relay's record tags, listen flags and close reasons; throws HG_ERR_NATIVE without the addon. */
export function relayBoundary(): RelayBoundary {
  const a = addon();
  return {
    records: a.relayRecords,
    listen: a.relayListen,
    dial: a.relayDial,
    closeReasons: a.relayCloseReasons,
  };
}

/** A batch of relay records (numbers, then their strings in order), and the first bytes its finished flows point into. */
export type RelayRecords = (numbers: Float64Array, strings: string[], firstBytes: Buffer | null) => void;

/**
 * A relay whose records go to onRecords; counters (2 numbers) is where counters() writes,
 * dial (relayBoundary().dial.length numbers) where forward() reads its spec. Throws
 * HG_ERR_NATIVE without the addon.
 */
export function createRelay(
  onRecords: RelayRecords,
  counters: Float64Array,
  dial: Float64Array,
): NativeRelay {
  return new (addon().Relay)(onRecords, counters, dial);
}

/** The address a socket is bound to (getsockname). Throws HG_ERR_SOCKET. */
export function socketName(fd: number): { host: string; port: number } {
  return call((a) => a.socketName(fd));
}

/**
 * Puts the calling thread in SCHED_IDLE (for good, unless privileged): it runs only when its
 * CPU has nothing else to run. Returns its thread id. Throws HG_ERR_SOCKET if refused.
 */
export function idleThread(): number {
  return call((a) => a.idleThread());
}

// This file runs as dist/src/net/native.js; node-gyp builds into the package root, and the
// npm package carries a prebuild (prebuildify: prebuilds/linux-x64/honeygate.glibc.node).
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CANDIDATES = ['build/Release/honeygate.node', 'build/Debug/honeygate.node'];

let loaded: Addon | undefined;
let loadError: HoneygateError | undefined;
let loadedFrom = '';

/**
 * The prebuild in `dir`/prebuilds that fits this Node (node-gyp-build's own choice of
 * platform, arch, libc and N-API tags), or a note on why there is none.
 */
export function prebuildFor(dir: string): { path: string } | { none: string } {
  const require = createRequire(import.meta.url);
  const folder = path.join(dir, 'prebuilds', `${process.platform}-${process.arch}`);
  let files: string[];
  try {
    files = readdirSync(folder).filter((f) => f.endsWith('.node'));
  } catch {
    return { none: `${folder}/ (not found)` };
  }
  let ngb: NodeGypBuild;
  try {
    ngb = require('node-gyp-build') as NodeGypBuild;
  } catch {
    return { none: `${folder}/ (node-gyp-build is not installed)` };
  }
  const fits = files
    .map((f) => ngb.parseTags(f))
    .filter(ngb.matchTags('node', process.versions.modules))
    .sort(ngb.compareTags('node'));
  if (fits[0]) return { path: path.join(folder, fits[0].file) };
  return { none: `${folder}/ (none of ${files.join(', ') || 'no files'} fits this Node)` };
}

interface NodeGypBuild {
  parseTags(file: string): { file: string };
  matchTags(runtime: string, abi: string): (tags: { file: string }) => boolean;
  compareTags(runtime: string): (a: { file: string }, b: { file: string }) => number;
}

/** Loads the addon: a local build first (build/Release, build/Debug), then the shipped prebuild. */
function addon(): Addon {
  if (loaded) return loaded;
  if (loadError) throw loadError;
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  const paths = CANDIDATES.map((c) => ROOT + c);
  const prebuild = prebuildFor(ROOT);
  if ('path' in prebuild) paths.push(prebuild.path);
  for (const file of paths) {
    try {
      loaded = require(file) as Addon;
      loadedFrom = file;
      return loaded;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      tried.push(`${file} (${e.code === 'MODULE_NOT_FOUND' ? 'not found' : e.message})`);
    }
  }
  if ('none' in prebuild) tried.push(prebuild.none);
  loadError = new HoneygateError(
    'HG_ERR_NATIVE',
    `tried ${tried.join(', ')}; run npm ci (needs g++, python3, make) or node scripts/build-native.mjs`,
  );
  throw loadError;
}

/** Whether the addon loads, and from which file; the reason lists every path tried. */
export function nativeAvailable(): { ok: true; path: string } | { ok: false; reason: string } {
  try {
    addon();
    return { ok: true, path: loadedFrom };
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
}

const HINTS: Record<string, string> = {
  EPERM: ' — needs CAP_NET_ADMIN (run as root or grant the capability)',
  EACCES: ' — ports below 1024 need root or CAP_NET_BIND_SERVICE',
  EADDRINUSE: ' — another process, or another honeygate, listens there',
  EADDRNOTAVAIL: ' — no interface of this host has that address',
};

/** What to do about a socket error code, as a suffix for its message ('' when nothing to say). */
export function socketHint(code: string | undefined): string {
  return code ? (HINTS[code] ?? '') : '';
}

/** Runs an addon call; its errors (the failed syscall) become HG_ERR_SOCKET with a hint. Usage errors pass. */
function call<T>(fn: (a: Addon) => T): T {
  const a = addon();
  try {
    return fn(a);
  } catch (err) {
    if (err instanceof TypeError) throw err; // a programming error: "Usage: ..."
    const e = err as NodeJS.ErrnoException;
    throw new HoneygateError('HG_ERR_SOCKET', `${e.message}${socketHint(e.code)}`, { cause: err });
  }
}

/**
 * socket() + setsockopt() + bind() + listen(); returns the listening fd for
 * `server.listen({ fd }, backlog, cb)`. Node calls listen() again, and for an fd it takes the
 * backlog only from that positional argument: `{ fd, backlog }` ends at its default, 511.
 * An IPv6 host gets an IPv6-only socket. Throws HG_ERR_SOCKET naming the failed call.
 */
export function listenSocket(host: string, port: number, opts: SocketOptions & { backlog?: number }): number {
  return call((a) => a.listenSocket(host, port, opts));
}

/** native/udp.cc's options for a datagram socket. */
export interface UdpSocketOptions {
  transparent?: boolean; // IP_TRANSPARENT: bind an address that is not this host's
  reuseAddr?: boolean; // SO_REUSEADDR: share the address with the listener that holds it
  mark?: number;
  origDst?: boolean; // IP_RECVORIGDSTADDR / IPV6_RECVORIGDSTADDR (a tproxy listener)
}

/**
 * A batch of datagrams from a UdpPort: per datagram 4 numbers [srcPort, dstPort, start,
 * end] (its bytes are payload[start, end)) and 2 strings [srcHost, dstHost] (dstHost ""
 * when the kernel gave no original destination). A port made without addresses (a
 * connected one) gives no strings and ports 0: numbers.length / 4 datagrams.
 */
export type UdpBatch = (numbers: Float64Array, hosts: string[], payload: Buffer) => void;

/** native/udp.cc's UdpPort: recvmmsg batches in, sendmmsg batches out, on one fd it owns. */
export interface NativeUdpPort {
  /**
   * Sends payloads[start, ...) (at most 64) with one sendmmsg, to hosts[i]:ports[i], or to
   * the connected peer when hosts is null. The count sent, or -errno if the first failed.
   */
  send(payloads: Buffer[], start: number, hosts: string[] | null, ports: number[] | null): number;
  /** One call of onWritable when the socket takes datagrams again (after an EAGAIN). */
  waitWritable(): void;
  close(): void;
}

/** A bound, non-blocking SOCK_DGRAM fd (native/udp.cc). Throws HG_ERR_SOCKET naming the syscall. */
export function udpSocket(host: string, port: number, opts: UdpSocketOptions): number {
  return call((a) => a.udpSocket(host, port, opts));
}

/** Connects a datagram socket to host:port (its only peer from then on). Throws HG_ERR_SOCKET. */
export function udpConnect(fd: number, host: string, port: number): void {
  call((a) => a.udpConnect(fd, host, port));
}

/**
 * Reads and writes `fd` in batches (recvmmsg, sendmmsg); owns the fd from here on.
 * addresses: false skips each datagram's addresses (a connected socket has one peer).
 */
export function udpPort(
  fd: number,
  onBatch: UdpBatch,
  onWritable?: () => void,
  addresses = true,
): NativeUdpPort {
  // One native callback per port (each holds an async context): called without arguments, it means writable.
  const callback = (numbers?: Float64Array, hosts?: string[], payload?: Buffer) => {
    if (numbers) onBatch(numbers, hosts!, payload!);
    else onWritable?.();
  };
  return call((a) => new a.UdpPort(fd, callback, addresses));
}

/**
 * A batch of conntrack events from a ConntrackReader (native/conntrack_reader.cc's header
 * comment has the layout): CONNTRACK_FIELDS numbers and 4 strings per record.
 */
export type ConntrackBatch = (numbers: Float64Array, hosts: string[]) => void;
export const CONNTRACK_FIELDS = 19;

/** native/conntrack_reader.cc's reader: a thread reading conntrack DESTROY events. */
export interface ConntrackReader {
  /** A dump request that makes the kernel evict expired entries now; false when refused. */
  sweep(): boolean;
  close(): void;
}

/**
 * Subscribes this namespace's conntrack DESTROY events of flows whose ct mark has every bit
 * of `mark`, with a receive buffer of `rcvbuf` bytes (forced; the kernel doubles it). Needs
 * CAP_NET_ADMIN. Throws HG_ERR_SOCKET naming the failed call.
 */
export function conntrackReader(
  opts: { mark: number; rcvbuf: number },
  onBatch: ConntrackBatch,
): ConntrackReader {
  return call((a) => new a.ConntrackReader(opts, onBatch));
}

/** socket() + setsockopt(); returns an unbound, unconnected fd. Throws HG_ERR_SOCKET. */
export function upstreamSocket(family: 4 | 6, opts: SocketOptions): number {
  return call((a) => a.upstreamSocket(family, opts));
}

/**
 * The destination before REDIRECT/DNAT (getsockopt SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST) of
 * a connected fd: conntrack's original tuple, so a tracked flow that no rule rewrote reports
 * its own local address; null when conntrack does not track the flow (ENOENT: conntrack is
 * not in use in this namespace). Throws HG_ERR_SOCKET.
 */
export function originalDst(fd: number): { host: string; port: number } | null {
  return call((a) => a.originalDst(fd));
}

/**
 * The fd under a Node socket (for originalDst), or null when it has none (closed, or not a
 * TCP handle). Node offers no public API for it: this reads the handle's fd, the one place
 * honeygate looks inside a Node object.
 */
export function socketFd(socket: net.Socket): number | null {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : null;
}

export interface UpstreamOptions {
  family: 4 | 6;
  host: string;
  port: number;
  localAddress: string; // with transparent: the attacker's address
  localPort: number; // 0: any; a taken port falls back to 0
  transparent: boolean;
  mark?: number;
  timeoutMs: number;
  onread?: net.OnReadOpts; // read into the caller's buffers (read-pool.ts)
}

/**
 * Connects to host:port from localAddress:localPort (a foreign address when transparent).
 * When that port is taken (a listener holds it, or the same 4-tuple is still in use) it
 * retries once from an ephemeral port. Resolves with the connected socket,
 * paused (nothing read yet) and with no-delay set; rejects with HG_ERR_UPSTREAM_CONNECT.
 * The fd is closed on every failure.
 */
export async function openUpstream(opts: UpstreamOptions): Promise<net.Socket> {
  const where = `${opts.host}:${opts.port}`;
  const deadline = Date.now() + opts.timeoutMs;
  try {
    return await dialOnce(opts, opts.localPort, opts.timeoutMs);
  } catch (err) {
    // EADDRINUSE: a listener holds the port (libuv reports bind's EADDRINUSE at connect).
    // EADDRNOTAVAIL from connect: the same 4-tuple is still in use (or in TIME_WAIT); from
    // bind it means the address itself, which another port would not cure.
    const { code, syscall } = err as NodeJS.ErrnoException;
    const taken =
      opts.localPort !== 0 && (code === 'EADDRINUSE' || (code === 'EADDRNOTAVAIL' && syscall === 'connect'));
    if (!taken) throw upstreamError(where, err);
    try {
      return await dialOnce(opts, 0, Math.max(1, deadline - Date.now()));
    } catch (retryErr) {
      throw upstreamError(where, retryErr, ` (retried from an ephemeral port: ${opts.localPort} was taken)`);
    }
  }
}

function upstreamError(where: string, err: unknown, note = ''): HoneygateError {
  return new HoneygateError('HG_ERR_UPSTREAM_CONNECT', `${where}: ${(err as Error).message}${note}`, {
    cause: err,
  });
}

/** One attempt; rejects with the raw error (its code decides on a retry). */
function dialOnce(opts: UpstreamOptions, localPort: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const fd = upstreamSocket(opts.family, { transparent: opts.transparent, mark: opts.mark });
    let socket: net.Socket;
    try {
      // manualStart: otherwise the constructor starts reading at once, and the honeypot's
      // first bytes would be taken before the caller resumes. Undocumented, honoured by
      // Node 20 and 24 alike; test/unit/native.test.ts checks that nothing is read early.
      const options = { fd, allowHalfOpen: true, manualStart: true, onread: opts.onread };
      socket = new net.Socket(options);
    } catch (err) {
      closeSync(fd); // not adopted: still ours to close
      throw err;
    }
    socket.on('error', () => {}); // kept until the pump's handler replaces it: never without one
    const timer = setTimeout(() => fail(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    const fail = (err: Error) => {
      clearTimeout(timer);
      socket.destroy(); // closes the fd
      reject(err);
    };
    socket.once('error', fail);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', fail);
      socket.pause(); // before Node's first read, which follows the 'connect' event
      socket.setNoDelay(true);
      resolve(socket);
    });
    try {
      socket.connect({ host: opts.host, port: opts.port, localAddress: opts.localAddress, localPort });
    } catch (err) {
      fail(err as Error); // invalid arguments throw at once
    }
  });
}

/** The calling thread's ids and capability sets (bit N: capability N), as privileges() reports them. */
export interface ThreadPrivileges {
  uid: number;
  euid: number;
  gid: number;
  egid: number;
  effective: bigint;
  permitted: bigint;
  inheritable: bigint;
  ambient: bigint;
  noNewPrivs: number;
}

/**
 * Switches the process to uid/gid/groups keeping only the `keep` capabilities on the calling
 * (main) thread, also as ambient ones, and sets no_new_privs on every thread
 * (native/privileges.cc). Throws HG_ERR_NATIVE without the addon, or the failed call.
 */
export function dropPrivileges(target: { uid: number; gid: number; groups: number[]; keep: number[] }): void {
  addon().dropPrivileges(target);
}

/** The calling thread's ids and capabilities. Throws HG_ERR_NATIVE without the addon. */
export function threadPrivileges(): ThreadPrivileges {
  return addon().privileges();
}
