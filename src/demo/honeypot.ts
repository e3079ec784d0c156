// The demo's honeypot: answers like an SSH server or a web server and prints, for every
// connection, the peer address it saw, one JSON line per connection on stdout:
//   {"peer":"198.51.100.10:40312","local":"192.0.2.74:22"}
// Usage: node honeypot.js PORT...   (prints "listening ADDR" per port once ready)
import net from 'node:net';

const SSH_BANNER = 'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n';

/** "::ffff:198.51.100.10" (a dual-stack socket's IPv4 peer) -> "198.51.100.10". */
function plain(ip: string | undefined): string {
  return ip?.startsWith('::ffff:') ? ip.slice(7) : (ip ?? '?');
}

function answer(socket: net.Socket, port: number): void {
  if (port === 22 || port === 2222) {
    socket.write(SSH_BANNER);
    socket.once('data', () => socket.end());
    return;
  }
  socket.once('data', () => {
    const body = '<html><body>It works!</body></html>\n';
    socket.end(
      `HTTP/1.1 200 OK\r\nServer: Apache/2.4.57 (Debian)\r\nContent-Type: text/html\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
}

const ports = process.argv.slice(2).map(Number);
if (!ports.length || ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) {
  process.stderr.write('Usage: honeypot.js PORT...\n');
  process.exit(2);
}
for (const port of ports) {
  const server = net.createServer((socket) => {
    socket.on('error', () => socket.destroy());
    socket.setTimeout(10_000, () => socket.destroy());
    const peer = `${plain(socket.remoteAddress)}:${socket.remotePort}`;
    const local = `${plain(socket.localAddress)}:${socket.localPort}`;
    process.stdout.write(`${JSON.stringify({ peer, local })}\n`);
    answer(socket, port);
  });
  server.on('error', (err) => {
    process.stderr.write(`honeypot: port ${port}: ${err.message}\n`);
    process.exit(1);
  });
  server.listen({ port, host: '::' }, () => process.stdout.write(`listening ${port}\n`));
}
