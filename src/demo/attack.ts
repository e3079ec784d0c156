// The demo's attacker: a connect scan of a few ports on a few addresses, an SSH banner
// grab and an HTTP request, like the first minute of any internet scanner. Prints one
// JSON line per attempt: {"target":"192.0.2.74:22","result":"SSH-2.0-OpenSSH_9.2p1 ..."}
// Usage: node attack.js TARGET_IP...
import net from 'node:net';

const SCAN_PORTS = [21, 22, 23, 25, 80, 443, 445, 1433, 3306, 3389, 5900, 6379, 8080, 9200];

function attempt(host: string, port: number, send: string | null): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let got = '';
    const done = (result: string) => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(3000, () => done(got ? got.split('\r\n')[0]! : 'open (no answer)'));
    socket.on('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
    socket.on('connect', () => {
      if (send !== null) socket.write(send);
    });
    socket.on('data', (d) => {
      got += d.toString('latin1');
      if (got.includes('\n')) done(got.split(/\r?\n/)[0]!);
    });
    socket.on('end', () => done(got ? got.split(/\r?\n/)[0]! : 'open, closed at once'));
  });
}

const targets = process.argv.slice(2);
if (!targets.length || targets.some((t) => !net.isIP(t))) {
  process.stderr.write('Usage: attack.js TARGET_IP...\n');
  process.exit(2);
}
const print = (target: string, result: string) =>
  process.stdout.write(`${JSON.stringify({ target, result })}\n`);
const fmt = (host: string, port: number) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);
for (const host of targets) {
  await Promise.all(SCAN_PORTS.map(async (port) => print(fmt(host, port), await attempt(host, port, null))));
  print(fmt(host, 22), await attempt(host, 22, 'SSH-2.0-libssh_0.9.6\r\n'));
  print(
    fmt(host, 80),
    await attempt(host, 80, `GET /admin.php HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: zgrab/0.x\r\n\r\n`),
  );
}
