// The batched datagram port's send queue: what it does with more than it may hold.
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { test } from 'node:test';
import { UdpBatchPort } from '../../src/gateway/udp/port.js';
import { nativeAvailable, udpConnect, udpSocket } from '../../src/net/native.js';
import { waitFor } from '../helpers/wait.js';

const native = nativeAvailable();

test('a send queue past 4 MiB drops and reports, and sends the rest', {
  skip: native.ok ? false : native.reason,
}, async () => {
  const sink = dgram.createSocket('udp4');
  sink.bind(0, '127.0.0.1');
  await new Promise((resolve) => sink.once('listening', resolve));
  let received = 0;
  sink.on('message', () => received++);
  const fd = udpSocket('127.0.0.1', 0, {});
  udpConnect(fd, '127.0.0.1', sink.address().port);
  const errors: number[] = [];
  const port = new UdpBatchPort(
    fd,
    () => {},
    true,
    (errno) => errors.push(errno),
  );
  try {
    // 80 datagrams of 60,000 bytes queued in one turn (4.8 MB): the queue holds 69 of them.
    const payload = Buffer.alloc(60_000, 0x61);
    for (let i = 0; i < 80; i++) port.send(payload);
    assert.deepEqual(errors, new Array(11).fill(105)); // ENOBUFS, once per dropped datagram
    await waitFor('the queued datagrams to arrive', () => received > 0);
    // After the flush the queue is empty again and takes a full load.
    for (let i = 0; i < 60; i++) port.send(payload);
    assert.equal(errors.length, 11);
  } finally {
    port.close();
    sink.close();
  }
});
