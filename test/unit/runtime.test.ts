// Regression: a reload that removed `health:` kept a server that checks had marked down,
// and with no checker left nothing ever marked it up again.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { loadConfigText } from '../../src/config/load.js';
import type { Recorder } from '../../src/events/recorder.js';
import { Deadlines } from '../../src/gateway/deadlines.js';
import { Runtime } from '../../src/gateway/runtime.js';

const config = (health: string) => {
  const r = loadConfigText(`
listeners: [{ name: l, bind: "127.0.0.1:0" }]
routes: [{ forward: pot }]
backends:
  pot:
    servers: ["127.0.0.1:9"]
    ${health}
`);
  assert.ok(r.ok, JSON.stringify(r));
  return r.config;
};

test('a reload without health checks brings servers that checks marked down back up', () => {
  const log = pino({ level: 'silent' });
  const recorder = {} as Recorder;
  const old = new Runtime(config('health: { interval: 1h }'), log, recorder, new Deadlines());
  const pool = old.pools.get('pot')!;
  pool.setUp('127.0.0.1:9', false);

  const next = new Runtime(config(''), log, recorder, new Deadlines());
  next.adopt(old);
  assert.equal(next.pools.get('pot')!.allDown(), true, 'adopt carries the state over');
  next.start();
  assert.equal(next.pools.get('pot')!.allDown(), false);
  next.stop();
});
