// The native addon and its wrapper (src/net/native.ts): argument checks, the loader, errors
// that name the syscall, fd hand-over to Node, openUpstream's port fallback, timeouts and fd
// hygiene on loopback; transparent upstreams and SO_ORIGINAL_DST in a network namespace (root).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { closeSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import type { CloseReason } from '../../src/events/event.js';
import {
  listenSocket,
  nativeAvailable,
  openUpstream,
  originalDst,
  relayBoundary,
  socketFd,
  upstreamSocket,
} from '../../src/net/native.js';
import { waitFor } from '../helpers/wait.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const DIST = fileURLToPath(new URL('../../', import.meta.url)); // dist/

const openFds = () => readdirSync('/proc/self/fd').length;
const fdOf = (socket: net.Socket) => {
  const fd = socketFd(socket);
  assert.ok(fd !== null, 'the socket has an fd');
  return fd;
};

function listen(server: net.Server, options: net.ListenOptions & { fd?: number }): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options, () => resolve((server.address() as net.AddressInfo).port));
  });
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** A loopback server that writes 'hello' to each peer and records who connected. */
async function helloServer(host = '127.0.0.1') {
  const peers: { address: string; port: number }[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    sockets.add(socket);
    peers.push({ address: socket.remoteAddress!, port: socket.remotePort! });
    socket.write('hello');
  });
  const port = await listen(server, { host, port: 0 });
  const close = () => {
    for (const s of sockets) s.destroy();
    return closeServer(server);
  };
  return { server, port, peers, close };
}

/** A port nobody holds right now on `host`. */
async function freePort(host: string): Promise<number> {
  const server = net.createServer();
  const port = await listen(server, { host, port: 0 });
  await closeServer(server);
  return port;
}

test('the addon loads', () => {
  assert.equal(nativeAvailable().ok, true);
});

// Every CloseReason, once: the compiler rejects a missing or an unknown key.
const CLOSE_REASONS: Record<CloseReason, true> = {
  'client-closed': true,
  'server-closed': true,
  'client-reset': true,
  'server-reset': true,
  'idle-timeout': true,
  'max-duration': true,
  'byte-cap': true,
  'server-unavailable': true,
  'capture-done': true,
  'capture-timeout': true,
  rejected: true,
  dropped: true,
  'no-route': true,
  'limit-global': true,
  'limit-per-source': true,
  'limit-rate': true,
  'spoof-attempt': true,
  'bad-proxy-header': true,
  'proxy-header-timeout': true,
  shutdown: true,
  'fd-exhausted': true,
  'tunnel-lost': true,
  crash: true,
  error: true,
};

test("native/boundary.h's tables: the relay's close reasons are CloseReasons, its tags and flags distinct", () => {
  const { records, listen, closeReasons } = relayBoundary();
  assert.ok(closeReasons.length > 0);
  for (const reason of closeReasons)
    assert.ok(Object.hasOwn(CLOSE_REASONS, reason), `${reason} is a CloseReason`);
  assert.equal(new Set(closeReasons).size, closeReasons.length);
  // The ways a relayed flow can end by itself; the rest are JS's decisions.
  for (const reason of [
    'client-closed',
    'server-closed',
    'client-reset',
    'server-reset',
    'byte-cap',
    'error',
  ]) {
    assert.ok(closeReasons.includes(reason as CloseReason), `the relay reports ${reason}`);
  }
  const tags = Object.values(records);
  assert.deepEqual(Object.keys(records).sort(), [
    'acceptFailed',
    'accepted',
    'dialFailed',
    'dialed',
    'finished',
  ]);
  assert.equal(new Set(tags).size, tags.length);
  assert.deepEqual(Object.keys(listen).sort(), ['local', 'originalDst']);
  assert.equal(listen.local & listen.originalDst, 0, 'flags are distinct bits');
});

test("native/boundary.h's dial spec: forward()'s numbers at distinct indexes below its length", () => {
  const { dial } = relayBoundary();
  const { length, ...fields } = dial;
  assert.deepEqual(Object.keys(fields).sort(), [
    'firstCap',
    'localPort',
    'mark',
    'maxIn',
    'maxOut',
    'port',
    'timeoutMs',
    'transparent',
  ]);
  const indexes = Object.values(fields);
  assert.equal(new Set(indexes).size, indexes.length);
  for (const index of indexes) assert.ok(Number.isInteger(index) && index >= 0 && index < length);
});

test('without a build, the loader names every path it tried', async () => {
  // A copy of the wrapper where no build/ directory is: dist/src/net -> ../../.. has none.
  const root = mkdtempSync(path.join(tmpdir(), 'hg-native-'));
  try {
    mkdirSync(path.join(root, 'dist/src/net'), { recursive: true });
    copyFileSync(path.join(DIST, 'src/errors.js'), path.join(root, 'dist/src/errors.js'));
    copyFileSync(path.join(DIST, 'src/net/native.js'), path.join(root, 'dist/src/net/native.js'));
    const copy = await import(pathToFileURL(path.join(root, 'dist/src/net/native.js')).href);
    const available = copy.nativeAvailable();
    assert.equal(available.ok, false);
    assert.match(available.reason, /^native addon not available: tried /);
    for (const p of ['build/Release/honeygate.node', 'build/Debug/honeygate.node']) {
      assert.ok(available.reason.includes(`${root}/${p} (not found)`), available.reason);
    }
    assert.match(available.reason, /run npm ci \(needs g\+\+, python3, make\)/);
    assert.throws(() => copy.upstreamSocket(4, {}), { code: 'HG_ERR_NATIVE' });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

describe('argument checks throw TypeError "Usage: ..."', () => {
  const cases: [string, () => unknown, RegExp][] = [
    ['listenSocket()', () => (listenSocket as (...a: unknown[]) => number)(), /^Usage: listenSocket\(/],
    ['host not a string', () => listenSocket(1 as unknown as string, 0, {}), /^Usage: listenSocket\(/],
    ['host a name', () => listenSocket('localhost', 0, {}), /^Usage: listenSocket\(/],
    ['host with a NUL', () => listenSocket('127.0.0.1\0x', 0, {}), /^Usage: listenSocket\(/],
    ['host too long', () => listenSocket('1'.repeat(100), 0, {}), /^Usage: listenSocket\(/],
    ['port 65536', () => listenSocket('127.0.0.1', 65536, {}), /^Usage: listenSocket\(/],
    ['port 1.5', () => listenSocket('127.0.0.1', 1.5, {}), /^Usage: listenSocket\(/],
    ['options not an object', () => listenSocket('127.0.0.1', 0, 5 as unknown as object), /^Usage/],
    ['transparent not a boolean', () => listenSocket('127.0.0.1', 0, { transparent: 1 as never }), /^Usage/],
    ['mark negative', () => listenSocket('127.0.0.1', 0, { mark: -1 }), /^Usage: listenSocket\(/],
    ['mark above 32 bits', () => listenSocket('127.0.0.1', 0, { mark: 2 ** 32 }), /^Usage/],
    ['backlog 0', () => listenSocket('127.0.0.1', 0, { backlog: 0 }), /^Usage: listenSocket\(/],
    ['family 5', () => upstreamSocket(5 as 4, {}), /^Usage: upstreamSocket\(/],
    ['family "4"', () => upstreamSocket('4' as unknown as 4, {}), /^Usage: upstreamSocket\(/],
    ['reusePort not a boolean', () => upstreamSocket(4, { reusePort: 'yes' as never }), /^Usage/],
    ['fd negative', () => originalDst(-1), /^Usage: originalDst\(/],
    ['fd a string', () => originalDst('3' as unknown as number), /^Usage: originalDst\(/],
  ];
  for (const [name, fn, message] of cases) {
    test(name, () =>
      assert.throws(fn, (err: Error) => err instanceof TypeError && message.test(err.message)),
    );
  }
});

test('listenSocket: a listening fd that server.listen({ fd }) adopts, IPv4 and IPv6', async () => {
  for (const host of ['127.0.0.1', '::1']) {
    const fd = listenSocket(host, 0, { reusePort: true, backlog: 64 });
    const accepted: string[] = [];
    const server = net.createServer((socket) => {
      socket.on('error', () => {});
      accepted.push(socket.remoteAddress!);
      socket.end('hi');
    });
    try {
      const port = await listen(server, { fd, backlog: 64 });
      assert.equal((server.address() as net.AddressInfo).address, host);
      const client = net.connect({ host, port });
      client.on('error', () => {});
      const reply = await new Promise<string>((resolve) => {
        let text = '';
        client.on('data', (d) => {
          text += d;
        });
        client.on('end', () => resolve(text));
      });
      client.destroy();
      assert.equal(reply, 'hi');
      assert.deepEqual(accepted, [host]);
    } finally {
      await closeServer(server);
    }
  }
});

test('listenSocket: an IPv6 socket is IPv6-only, so IPv4 on the same port is free', async () => {
  const fd6 = listenSocket('::', 0, {});
  const server6 = net.createServer();
  const port = await listen(server6, { fd: fd6 });
  try {
    const fd4 = listenSocket('0.0.0.0', port, {});
    closeSync(fd4);
  } finally {
    await closeServer(server6);
  }
});

test('errors name the syscall, carry its code, and leak no fd', async () => {
  const held = await helloServer();
  try {
    const before = openFds();
    assert.throws(
      () => listenSocket('127.0.0.1', held.port, {}),
      (err: Error & { code?: string; cause?: NodeJS.ErrnoException }) => {
        assert.equal(err.code, 'HG_ERR_SOCKET');
        assert.equal(
          err.message,
          `cannot set up a socket: bind(127.0.0.1:${held.port}): EADDRINUSE — another process, or another honeygate, listens there`,
        );
        assert.equal(err.cause?.code, 'EADDRINUSE');
        assert.equal(err.cause?.syscall, 'bind');
        return true;
      },
    );
    assert.throws(
      () => listenSocket('192.0.2.254', 0, {}),
      /bind\(192\.0\.2\.254:0\): EADDRNOTAVAIL — no interface/,
    );
    assert.equal(openFds(), before);
  } finally {
    await held.close();
  }
});

// Null when conntrack does not track the flow (no NAT table loaded in this namespace);
// with conntrack on, a flow no rule rewrote reports where it was headed: the server itself.
test('originalDst: a loopback connection no rule rewrote', async () => {
  let serverSide: net.Socket | undefined;
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    serverSide = socket;
  });
  const port = await listen(server, { host: '127.0.0.1', port: 0 });
  const client = net.connect({ host: '127.0.0.1', port });
  client.on('error', () => {});
  try {
    await waitFor('the server to accept', () => serverSide);
    for (const socket of [serverSide!, client]) {
      const dst = originalDst(fdOf(socket));
      if (dst !== null) assert.deepEqual(dst, { host: '127.0.0.1', port });
    }
  } finally {
    client.destroy();
    serverSide?.destroy();
    await closeServer(server);
  }
});

test('setsockopt without the capability: EPERM, with the hint', async (t) => {
  // As root, a child without CAP_NET_ADMIN and CAP_NET_RAW (either allows IP_TRANSPARENT).
  const prefix = isRoot ? ['setpriv', '--bounding-set', '-net_admin,-net_raw'] : [];
  if (isRoot) {
    try {
      await run('setpriv', ['--version']);
    } catch {
      t.skip('needs setpriv (util-linux) to drop the capability as root');
      return;
    }
  }
  const module = pathToFileURL(path.join(DIST, 'src/net/native.js')).href;
  const script = `
    const { upstreamSocket, listenSocket } = await import(${JSON.stringify(module)});
    const out = [];
    for (const f of [() => upstreamSocket(4, { transparent: true }), () => upstreamSocket(6, { transparent: true }),
                     () => listenSocket('127.0.0.1', 0, { mark: 0x1000 })]) {
      try { f(); out.push('no error'); } catch (e) { out.push(e.code + ' ' + e.message); }
    }
    console.log(JSON.stringify(out));`;
  const [command, ...args] = [...prefix, process.execPath, '--input-type=module', '-e', script];
  const { stdout } = await run(command!, args);
  const hint = ' — needs CAP_NET_ADMIN (run as root or grant the capability)';
  assert.deepEqual(JSON.parse(stdout), [
    `HG_ERR_SOCKET cannot set up a socket: setsockopt(SOL_IP, IP_TRANSPARENT, 1): EPERM${hint}`,
    `HG_ERR_SOCKET cannot set up a socket: setsockopt(SOL_IPV6, IPV6_TRANSPARENT, 1): EPERM${hint}`,
    `HG_ERR_SOCKET cannot set up a socket: setsockopt(SOL_SOCKET, SO_MARK, 0x1000): EPERM${hint}`,
  ]);
});

describe('openUpstream on loopback (not transparent)', () => {
  test('connects from localAddress:localPort, paused: nothing is read before resume()', async () => {
    const server = await helloServer();
    const localPort = await freePort('127.0.0.2');
    try {
      const socket = await openUpstream({
        family: 4,
        host: '127.0.0.1',
        port: server.port,
        localAddress: '127.0.0.2',
        localPort,
        transparent: false,
        timeoutMs: 2000,
      });
      const chunks: Buffer[] = [];
      socket.on('data', (d: Buffer) => chunks.push(d));
      assert.equal(socket.listenerCount('error') > 0, true);
      assert.equal(socket.isPaused(), true);
      await waitFor('the server to write hello', () => server.peers.length === 1);
      // Give the loop a few turns with the bytes in the kernel: a reading socket would take them.
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
      assert.equal(socket.bytesRead, 0);
      assert.deepEqual(chunks, []);
      socket.resume();
      await waitFor('hello', () => Buffer.concat(chunks).toString() === 'hello');
      assert.deepEqual(server.peers, [{ address: '127.0.0.2', port: localPort }]);
      socket.destroy();
    } finally {
      await server.close();
    }
  });

  test('a port held by a listener: EADDRINUSE, retried once from an ephemeral port', async () => {
    const server = await helloServer();
    try {
      // The server's own listening port on the same address is certainly taken.
      const socket = await openUpstream({
        family: 4,
        host: '127.0.0.1',
        port: server.port,
        localAddress: '127.0.0.1',
        localPort: server.port,
        transparent: false,
        timeoutMs: 2000,
      });
      await waitFor('the server to accept', () => server.peers.length === 1);
      assert.equal(server.peers[0]!.address, '127.0.0.1');
      assert.notEqual(server.peers[0]!.port, server.port);
      assert.equal(socket.localPort, server.peers[0]!.port);
      socket.destroy();
    } finally {
      await server.close();
    }
  });

  test('the same 4-tuple still open: EADDRNOTAVAIL, retried from an ephemeral port', async () => {
    const server = await helloServer();
    const localPort = await freePort('127.0.0.3');
    const opts = {
      family: 4,
      host: '127.0.0.1',
      port: server.port,
      localAddress: '127.0.0.3',
      localPort,
      transparent: false,
      timeoutMs: 2000,
    } as const;
    try {
      const first = await openUpstream(opts);
      const second = await openUpstream(opts);
      await waitFor('two peers', () => server.peers.length === 2);
      assert.equal(server.peers[0]!.port, localPort);
      assert.notEqual(server.peers[1]!.port, localPort);
      first.destroy();
      second.destroy();
    } finally {
      await server.close();
    }
  });

  test('failures reject with HG_ERR_UPSTREAM_CONNECT and close the fd', async () => {
    const before = openFds();
    const closed = await freePort('127.0.0.1');
    await assert.rejects(
      openUpstream({
        family: 4,
        host: '127.0.0.1',
        port: closed,
        localAddress: '127.0.0.1',
        localPort: 0,
        transparent: false,
        timeoutMs: 2000,
      }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'HG_ERR_UPSTREAM_CONNECT');
        assert.match(
          err.message,
          new RegExp(`^cannot connect to a honeypot server: 127\\.0\\.0\\.1:${closed}: .*ECONNREFUSED`),
        );
        return true;
      },
    );
    // Not transparent, so the foreign address cannot be bound (and no other port helps).
    await assert.rejects(
      openUpstream({
        family: 4,
        host: '127.0.0.1',
        port: closed,
        localAddress: '198.51.100.7',
        localPort: 40000,
        transparent: false,
        timeoutMs: 2000,
      }),
      /127\.0\.0\.1:\d+: bind EADDRNOTAVAIL 198\.51\.100\.7:40000$/,
    );
    // A full accept queue drops further SYNs: the connection hangs until the deadline.
    const port = await freePort('127.0.0.1');
    const fd = listenSocket('127.0.0.1', port, { backlog: 1 }); // never accepts
    const fillers: net.Socket[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const filler = net.connect({ host: '127.0.0.1', port });
        filler.on('error', () => {});
        fillers.push(filler);
        await new Promise((resolve) => filler.once('connect', resolve));
      }
      const started = Date.now();
      await assert.rejects(
        openUpstream({
          family: 4,
          host: '127.0.0.1',
          port,
          localAddress: '127.0.0.1',
          localPort: 0,
          transparent: false,
          timeoutMs: 300,
        }),
        new RegExp(
          `^HoneygateError: cannot connect to a honeypot server: 127\\.0\\.0\\.1:${port}: no answer within 300 ms$`,
        ),
      );
      assert.ok(Date.now() - started >= 290);
    } finally {
      for (const f of fillers) f.destroy();
      closeSync(fd);
    }
    await waitFor('every fd closed', () => openFds() === before);
  });
});

describe('in a network namespace (root)', {
  skip: isRoot ? false : 'needs root (network namespaces)',
}, () => {
  const ns = `hg-native-${process.pid}`;
  const child = path.join(DIST, 'test/helpers/native-netns.js');
  const ruleset = `
    table ip hgtest {
      chain out {
        type nat hook output priority -100; policy accept;
        tcp dport 9998 redirect to :19998
        tcp dport 9999 redirect to :19999
      }
    }
    table ip6 hgtest {
      chain out {
        type nat hook output priority -100; policy accept;
        tcp dport 9999 redirect to :19999
      }
    }`;

  /** Runs `cmd` inside the namespace. */
  const inNs = (cmd: string, ...args: string[]) => run('ip', ['netns', 'exec', ns, cmd, ...args]);
  /** Runs a scenario of test/helpers/native-netns.ts in the namespace; its JSON result. */
  async function scenario(name: string) {
    const { stdout } = await run('ip', ['netns', 'exec', ns, process.execPath, child, name], {
      timeout: 20000,
    });
    return JSON.parse(stdout);
  }

  before(async () => {
    await run('ip', ['netns', 'add', ns]);
    // Honeypot addresses on lo; the attacker ranges route home through a local route in a
    // table of their own: not this host's addresses (bind needs IP_TRANSPARENT), yet replies
    // to them are delivered locally, as the gateway's fwmark table does.
    for (const args of [
      ['link', 'set', 'lo', 'up'],
      ['addr', 'add', '192.0.2.1/24', 'dev', 'lo'],
      ['-6', 'addr', 'add', '2001:db8::1/64', 'dev', 'lo'],
      ['rule', 'add', 'pref', '100', 'to', '198.51.100.0/24', 'lookup', '4210'],
      ['route', 'add', 'local', '198.51.100.0/24', 'dev', 'lo', 'table', '4210'],
      ['-6', 'rule', 'add', 'pref', '100', 'to', '2001:db8:ff::/64', 'lookup', '4210'],
      ['-6', 'route', 'add', 'local', '2001:db8:ff::/64', 'dev', 'lo', 'table', '4210'],
    ]) {
      await run('ip', ['-n', ns, ...args]);
    }
    await inNs('nft', ruleset);
  });

  after(async () => {
    await run('ip', ['netns', 'del', ns]).catch(() => {});
  });

  test('transparent: the server sees the attacker address and port it was given', async () => {
    const result = await scenario('transparent');
    for (const [family, attacker] of [
      ['v4', '198.51.100.7'],
      ['v6', '2001:db8:ff::7'],
    ] as const) {
      const r = result[family];
      const peers = r.peers.map((p: { address: string; port: number }) => ({
        address: p.address,
        port: p.port,
      }));
      assert.deepEqual(peers, [{ address: attacker, port: 40007 }], family);
      assert.equal(r.localPort, 40007);
      assert.equal(r.reply, 'hello');
      // Without IP_TRANSPARENT the same bind fails: it is the option that does the work.
      assert.equal(r.refused.code, 'HG_ERR_UPSTREAM_CONNECT');
      assert.match(
        r.refused.message,
        new RegExp(`bind EADDRNOTAVAIL ${attacker.replaceAll('.', '\\.')}:40008$`),
      );
    }
  });

  test('transparent: a taken attacker port falls back to an ephemeral one', async () => {
    const { holderPort, peers } = await scenario('fallback');
    assert.equal(peers.length, 3);
    for (const p of peers) assert.equal(p.address, '198.51.100.7');
    assert.notEqual(peers[0].port, holderPort); // a listener held it: EADDRINUSE
    assert.equal(peers[1].port, 40020);
    assert.notEqual(peers[2].port, 40020); // the same 4-tuple was open: EADDRNOTAVAIL
  });

  // With conntrack on (any nat table loads it), a flow no rule rewrote reports its own
  // destination.
  test('originalDst: the address before an nft redirect, IPv4, v4-mapped and IPv6', async () => {
    const { v4, dual } = await scenario('originaldst');
    assert.deepEqual(
      v4.map((p: { originalDst: unknown }) => p.originalDst),
      [{ host: '192.0.2.1', port: 9998 }],
    );
    assert.deepEqual(
      dual.map((p: { originalDst: unknown }) => p.originalDst),
      [
        { host: '192.0.2.1', port: 9999 },
        { host: '2001:db8::1', port: 9999 },
        { host: '192.0.2.1', port: 19999 },
      ],
    );
  });
});
