// drop: honeygate accepts and closes with a FIN without sending a byte, as a service that
// hangs up would; never a reset, whatever the attacker sent.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect, readAll } from '../helpers/client.js';
import { startHoneygate } from '../helpers/honeygate.js';

// Bug: drop closed with unread bytes in the kernel, which sends a reset instead of the FIN
// it promises (and a reset is a fingerprint).
test('drop answers with a FIN even when the attacker sent bytes', { timeout: 60_000 }, async () => {
  const hg = await startHoneygate(`
listeners:
  - name: d
    bind: "127.0.0.1:0"
routes:
  - drop: {}
`);
  try {
    const s = await connect(hg.port('d'));
    s.write('hello there');
    const reply = await readAll(s);
    assert.equal(reply.error, null, 'no reset');
    assert.equal(reply.data.length, 0);
  } finally {
    await hg.close();
  }
});
