// The demo's way to the dashboard: the gateway's admin server listens on loopback inside the
// gateway's namespace, which the root namespace cannot reach, and the demo must not change the
// root namespace's network. So this script, run inside the namespace, listens on a Unix socket
// (a file: seen from every namespace) and connects each client to the admin port; the demo
// listens on 127.0.0.1 in the root namespace and hands each browser connection to it.
// Usage: node bridge.js SOCKET_PATH ADMIN_PORT   (prints "listening" once ready)
import net from 'node:net';

const [path, port] = process.argv.slice(2);
net
  .createServer((client) => {
    const admin = net.connect(Number(port), '127.0.0.1');
    client.on('error', () => admin.destroy());
    admin.on('error', () => client.destroy());
    client.pipe(admin).pipe(client);
  })
  .listen(path!, () => process.stdout.write('listening\n'));
