// The distinct-source sketches (src/events/hll.ts) against exact counts: exact while
// sparse, within the stated error once dense, and a union of parts equal to the whole.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hash32, Sketch, SPARSE_MAX, STANDARD_ERROR } from '../../src/events/hll.js';

const ip = (n: number) => `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;

function sketchOf(from: number, to: number, step = 1): Sketch {
  const s = new Sketch();
  for (let n = from; n < to; n += step) s.add(hash32(ip(n)));
  return s;
}

describe('HyperLogLog sketch of sources', () => {
  it('counts exactly while sparse, through a stored round trip', () => {
    for (const n of [0, 1, 37, SPARSE_MAX]) {
      const s = sketchOf(0x0a000000, 0x0a000000 + n);
      assert.equal(s.dense, false);
      assert.equal(s.count(), n);
      assert.equal(Sketch.from(s.toBlob()).count(), n);
      assert.ok(s.toBlob().length <= 4097);
    }
    // The same sources again add nothing.
    const s = sketchOf(0x0a000000, 0x0a000000 + 100);
    s.merge(sketchOf(0x0a000000, 0x0a000000 + 100).toBlob());
    assert.equal(s.count(), 100);
  });

  it('estimates within 3 standard errors once dense', () => {
    for (const n of [SPARSE_MAX + 1, 5_000, 50_000, 1_000_000]) {
      const s = sketchOf(0xc6336400, 0xc6336400 + n);
      assert.equal(s.dense, true);
      const err = Math.abs(s.count() - n) / n;
      assert.ok(err <= 3 * STANDARD_ERROR, `${n}: estimate ${s.count()} (${(err * 100).toFixed(2)}%)`);
    }
  });

  it('merges parts (sparse and dense, overlapping) into the sketch of the whole', () => {
    const whole = sketchOf(0, 200_000).toBlob();
    const u = new Sketch();
    u.merge(sketchOf(0, 100).toBlob()); // sparse
    u.merge(sketchOf(50, 120_000).toBlob()); // dense, overlapping
    u.merge(sketchOf(100_000, 200_000).toBlob());
    assert.deepEqual(u.toBlob(), whole);
    // An empty or unknown blob is an empty sketch.
    assert.equal(Sketch.from(Buffer.alloc(0)).count(), 0);
    assert.equal(Sketch.from(Buffer.from([9, 1, 2])).count(), 0);
  });

  it('spreads addresses evenly over the registers', () => {
    const counts = new Array<number>(16).fill(0);
    for (let n = 0; n < 160_000; n++) counts[hash32(ip(0xcb007100 + n)) >>> 28]!++;
    for (const c of counts) assert.ok(c > 9_000 && c < 11_000, String(counts));
  });
});
