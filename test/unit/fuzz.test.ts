// A short pass of the fuzzer (test/fuzz) over each target: a few seconds, bounded by time and
// by count, from a fixed seed. `npm run fuzz` runs the long one.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fuzz } from '../fuzz/engine.js';
import { TARGETS } from '../fuzz/targets/index.js';

const SECONDS = Number(process.env.HG_FUZZ_SECONDS ?? 3);
const RUNS = Number(process.env.HG_FUZZ_RUNS ?? 200_000);
const SEED = Number(process.env.HG_FUZZ_SEED ?? 1);

describe('fuzz (short pass)', () => {
  for (const target of TARGETS) {
    it(`${target.name}: ${SECONDS} s or ${RUNS} inputs without a fault (seed ${SEED})`, async () => {
      const lines: string[] = [];
      const r = await fuzz(target, { runs: RUNS, seconds: SECONDS, seed: SEED, log: (l) => lines.push(l) });
      for (const [issue, k] of r.known)
        console.log(`# fuzz ${target.name}: known finding ${issue}, ${k.count} inputs: ${k.example}`);
      assert.equal(r.fault, undefined, lines.join('\n'));
      assert.ok(r.branches.covered > 0, 'no branch covered: is the instrumentation working?');
    });
  }
});
