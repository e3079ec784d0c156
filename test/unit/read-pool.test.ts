// Reads into reused buffers (src/net/read-pool.ts): a bulk download is read into a few
// buffers that come back after use, the bytes arrive intact even while consumers hold
// lent buffers, and short reads are copies the consumer owns.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { test } from 'node:test';
import { claim, pooledReads, READ_BYTES } from '../../src/net/read-pool.js';

test('a bulk read lends a few reused buffers and every byte arrives intact', async () => {
  const sent = randomBytes(8 * 1024 * 1024);
  let writer: net.Socket | null = null;
  const server = net.createServer((s) => {
    s.on('error', () => {});
    writer = s;
    s.end(sent);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  try {
    const got: Buffer[] = [];
    const held: { chunk: Buffer; copy: Buffer; give: () => void }[] = [];
    const buffers = new Set<ArrayBufferLike>();
    let lent = 0;
    let copies = 0;
    await new Promise<void>((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port, onread: pooledReads() });
      socket.on('error', reject);
      // Reads are full only when more than a read's worth is queued: the reader starts once
      // the kernel holds all it will (the server has bytes it cannot write). Later reads
      // depend on timing (on loopback they may alternate full and short).
      socket.pause();
      const start = () => (writer && writer.writableLength > 0 ? socket.resume() : setTimeout(start, 1));
      start();
      // A consumer like a tunnel stream: it keeps lent chunks for a while (up to 4, then it
      // pauses the socket) and gives them back later, checking nothing overwrote them.
      const giveBack = () => {
        for (const h of held.splice(0)) {
          assert.ok(h.chunk.equals(h.copy), 'a lent buffer was overwritten while held');
          h.give();
        }
        socket.resume();
      };
      socket.on('data', (chunk: Buffer) => {
        got.push(Buffer.from(chunk));
        const give = claim(chunk);
        if (!give) {
          copies++;
          return;
        }
        lent++;
        buffers.add(chunk.buffer);
        assert.equal(chunk.length, READ_BYTES);
        assert.equal(claim(chunk), undefined, 'a buffer is lent once');
        held.push({ chunk, copy: Buffer.from(chunk), give });
        if (held.length >= 4) {
          socket.pause();
          setImmediate(giveBack);
        }
      });
      socket.on('end', () => {
        giveBack();
        resolve();
      });
    });
    assert.ok(Buffer.concat(got).equals(sent), 'the bytes read are the bytes sent');
    assert.ok(lent >= 1, `full reads are lent (${lent} lent, ${copies} copied)`);
    assert.ok(buffers.size <= 8, `${buffers.size} buffers for ${lent} lent reads`);
  } finally {
    server.close();
  }
});

test('short reads are copies, and a chunk nobody claims is not lent later', async () => {
  let client: net.Socket | null = null;
  const server = net.createServer((s) => {
    client = s;
    s.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  try {
    const socket = net.connect({ host: '127.0.0.1', port, onread: pooledReads() });
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => {
      assert.equal(claim(chunk), undefined, 'a short read is a copy');
      chunks.push(chunk);
    });
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    const peer = await new Promise<net.Socket>((resolve) => {
      const poll = () => (client ? resolve(client) : setImmediate(poll));
      poll();
    });
    peer.write('hello');
    await new Promise<void>((resolve) => socket.once('data', () => resolve()));
    peer.end('world');
    await new Promise<void>((resolve) => socket.once('end', resolve));
    // Kept without a claim: still intact after later reads into the shared buffer.
    assert.equal(Buffer.concat(chunks).toString(), 'helloworld');
    assert.equal(claim(chunks[0]!), undefined, 'outside its event a chunk cannot be claimed');
    socket.destroy();
  } finally {
    server.close();
  }
});
