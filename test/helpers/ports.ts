// Free TCP ports on 127.0.0.1 for tests that must name a port in a config file (a peer's
// listen line, a honeygate listener). There is a window between closing the probe and the
// real bind in which another process could take the port; below the ephemeral range that is
// rare, and the binding side fails loudly if it happens.
import net from 'node:net';

const HOST = '127.0.0.1';

/**
 * Resolves to a port that was free on 127.0.0.1 a moment ago, below the kernel's ephemeral
 * range: a port taken from listen(0) went back to the pool that every later listen(0) and
 * every client socket draws from, so a test's "nothing listens here" port was now and then
 * handed to another test server and the refused connect it expected was answered.
 */
export function freePort(): Promise<number> {
  return freePortRange(1);
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.on('error', () => resolve(false));
    server.listen(port, HOST, () => server.close(() => resolve(true)));
  });
}

/**
 * Resolves to the first port of `n` consecutive ports that were all free, searched above
 * the kernel's ephemeral range start so clients' own ports rarely collide. Throws after
 * 50 tries.
 */
export async function freePortRange(n: number): Promise<number> {
  if (!Number.isInteger(n) || n < 1 || n > 5000) throw new Error(`freePortRange: n must be 1-5000, got ${n}`);
  for (let attempt = 0; attempt < 50; attempt++) {
    // 20000-31999 lies below Linux's default ephemeral range (32768-60999).
    const start = 20000 + Math.floor(Math.random() * (12000 - n));
    let ok = true;
    for (let p = start; p < start + n && ok; p++) ok = await canBind(p);
    if (ok) return start;
  }
  throw new Error(`freePortRange: no ${n} consecutive free ports found in 50 tries`);
}
