// Runs one scenario of test/unit/native.test.ts inside the test's network namespace
// (`ip netns exec NS node native-netns.js SCENARIO`) and prints its result as one JSON line.
// The namespace (set up by the test) has 192.0.2.1 and 2001:db8::1 on lo, routes the
// attacker ranges 198.51.100.0/24 and 2001:db8:ff::/64 home through a local route in a
// table of their own (so they are not this host's addresses), and REDIRECTs port 9999.
import net from 'node:net';
import { openUpstream, originalDst, socketFd } from '../../src/net/native.js';

/** A server that records every peer it accepted and writes 'hello' to it. */
async function peerServer(host: string, port = 0) {
  const peers: { address: string; port: number; originalDst: unknown }[] = [];
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    const fd = socketFd(socket);
    peers.push({
      address: socket.remoteAddress!,
      port: socket.remotePort!,
      originalDst: fd === null ? 'no fd' : originalDst(fd),
    });
    socket.end('hello');
  });
  await new Promise<void>((resolve) => server.listen({ host, port, ipv6Only: false }, resolve));
  return { server, peers, port: (server.address() as net.AddressInfo).port };
}

async function closeAll(sockets: net.Socket[], servers: net.Server[]) {
  for (const s of sockets) s.destroy();
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
}

function read(socket: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (d) => {
      text += d;
    });
    socket.on('end', () => resolve(text));
    socket.resume();
  });
}

function errorText(err: unknown) {
  return { code: (err as { code?: string }).code, message: (err as Error).message };
}

const SCENARIOS: Record<string, () => Promise<unknown>> = {
  // The honeypot sees the attacker's address and port; without IP_TRANSPARENT bind fails.
  async transparent() {
    const result: Record<string, unknown> = {};
    for (const [family, server, attacker] of [
      [4, '192.0.2.1', '198.51.100.7'],
      [6, '2001:db8::1', '2001:db8:ff::7'],
    ] as const) {
      const s = await peerServer(server);
      const upstream = await openUpstream({
        family,
        host: server,
        port: s.port,
        localAddress: attacker,
        localPort: 40007,
        transparent: true,
        mark: 0x1000,
        timeoutMs: 3000,
      });
      const localPort = upstream.localPort;
      const reply = await read(upstream);
      const refused = await openUpstream({
        family,
        host: server,
        port: s.port,
        localAddress: attacker,
        localPort: 40008,
        transparent: false,
        timeoutMs: 3000,
      }).then(
        () => null,
        (err: unknown) => errorText(err),
      );
      await closeAll([upstream], [s.server]);
      result[`v${family}`] = { peers: s.peers, localPort, reply, refused };
    }
    return result;
  },

  // A taken attacker port falls back to an ephemeral one, still from the attacker's address.
  async fallback() {
    const s = await peerServer('192.0.2.1');
    const holder = await peerServer('0.0.0.0'); // a listener holding the port: EADDRINUSE
    const common = { family: 4, host: '192.0.2.1', port: s.port, localAddress: '198.51.100.7' } as const;
    const opts = { ...common, transparent: true, timeoutMs: 3000 };
    const fromListened = await openUpstream({ ...opts, localPort: holder.port });
    const first = await openUpstream({ ...opts, localPort: 40020 });
    const second = await openUpstream({ ...opts, localPort: 40020 }); // same 4-tuple: EADDRNOTAVAIL
    await Promise.all([read(fromListened), read(first), read(second)]);
    await closeAll([fromListened, first, second], [s.server, holder.server]);
    return { holderPort: holder.port, peers: s.peers };
  },

  // SO_ORIGINAL_DST after an nft redirect; null for a direct connection. The '::' server is
  // dual-stack, so its IPv4 flows arrive v4-mapped.
  async originaldst() {
    const v4 = await peerServer('0.0.0.0', 19998);
    const dual = await peerServer('::', 19999);
    const sockets: net.Socket[] = [];
    for (const [host, port] of [
      ['192.0.2.1', 9998],
      ['192.0.2.1', 9999],
      ['2001:db8::1', 9999],
      ['192.0.2.1', 19999],
    ] as const) {
      const socket = net.connect({ host, port });
      socket.on('error', () => {});
      sockets.push(socket);
      await read(socket);
    }
    await closeAll(sockets, [v4.server, dual.server]);
    return { v4: v4.peers, dual: dual.peers };
  },
};

const name = process.argv[2] ?? '';
const scenario = SCENARIOS[name];
if (!scenario) {
  process.stderr.write(`unknown scenario ${name} (known: ${Object.keys(SCENARIOS).join(', ')})\n`);
  process.exit(2);
}
scenario().then(
  (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
  (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
