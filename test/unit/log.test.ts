// The log's two faces (#13): JSON lines for machines, one readable line per record for
// people; and the `listening` lines, one per run of ports rather than one per socket.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BoundSocket } from '../../src/gateway/listener.js';
import { listeningRuns } from '../../src/gateway/listening.js';
import { prettyLine } from '../../src/log.js';

test('prettyLine: time, level, message, then the fields as key=value, nested ones dotted', () => {
  const line = JSON.stringify({
    level: 30,
    time: '2026-12-05T14:02:03.120Z',
    pid: 42,
    config: '/etc/honeygate/honeygate.yaml',
    listeners: 2,
    events: { sqlite: '/var/lib/honeygate/events.db', jsonl: '/var/log/honeygate/events.jsonl' },
    admin: '127.0.0.1:9100',
    msg: 'ready',
  });
  assert.equal(
    prettyLine(line),
    '14:02:03.120 INFO  ready config=/etc/honeygate/honeygate.yaml listeners=2 events.sqlite=/var/lib/honeygate/events.db events.jsonl=/var/log/honeygate/events.jsonl admin=127.0.0.1:9100\n',
  );
  // A value with spaces is quoted, a list stays a list, colour only when asked.
  const warn = JSON.stringify({
    level: 40,
    time: '2026-12-05T14:02:04.000Z',
    msg: 'm',
    why: 'a b',
    s: ['x'],
  });
  assert.equal(prettyLine(warn), '14:02:04.000 WARN  m why="a b" s=["x"]\n');
  assert.equal(prettyLine(warn, true), '14:02:04.000 \x1b[33mWARN \x1b[0m m why="a b" s=["x"]\n');
  // An error's stack follows, indented; a line that is not JSON passes as it is.
  const fatal = JSON.stringify({
    level: 60,
    time: '2026-12-05T14:02:05.000Z',
    msg: 'boom',
    err: { message: 'boom', stack: 'Error: boom\n    at x (y.js:1:1)' },
  });
  assert.equal(prettyLine(fatal), '14:02:05.000 FATAL boom\n    Error: boom\n        at x (y.js:1:1)\n');
  assert.equal(prettyLine('not json\n'), 'not json\n');
});

function bound(listener: string, address: string, key = address): BoundSocket {
  return { key, listener, address, close: () => {}, local: null };
}

test('listeningRuns: a port range is one line; port 0 and transparent sockets stand alone', () => {
  const range = Array.from({ length: 1000 }, (_, i) => bound('wide', `0.0.0.0:${1000 + i}`));
  assert.deepEqual(listeningRuns(range), [{ listener: 'wide', address: '0.0.0.0:1000-1999', ports: 1000 }]);
  assert.deepEqual(
    listeningRuns([
      bound('ssh', '[::]:22'),
      bound('ssh', '[::]:23'),
      bound('ssh', '0.0.0.0:24'), // another address
      bound('web', '0.0.0.0:25'), // another listener
      bound('web', '0.0.0.0:27'), // a gap
      bound('t', '127.0.0.1:40000', 't|127.0.0.1:0'), // port 0: the kernel's pick
      bound('t', '127.0.0.1:40001', 't|127.0.0.1:0'),
      bound('tp', '127.0.0.1:15001', 'tproxy|127.0.0.1:15001'),
    ]),
    [
      { listener: 'ssh', address: '[::]:22-23', ports: 2 },
      { listener: 'ssh', address: '0.0.0.0:24', ports: 1 },
      { listener: 'web', address: '0.0.0.0:25', ports: 1 },
      { listener: 'web', address: '0.0.0.0:27', ports: 1 },
      { listener: 't', address: '127.0.0.1:40000', ports: 1 },
      { listener: 't', address: '127.0.0.1:40001', ports: 1 },
      { listener: 'tp', address: '127.0.0.1:15001', ports: 1 },
    ],
  );
});
