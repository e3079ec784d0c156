// `npm run fuzz`: the long fuzz run. Each target in turn, 10,000,000 inputs by default.
//   node dist/test/fuzz/run.js [--target NAME] [--runs N] [--seconds S] [--seed N] [--save-corpus]
//   node dist/test/fuzz/run.js --target NAME --repro FILE     run one saved input
// Exits 1 on a fault (the input is in fuzz-crashes/, the command to reproduce it printed).
import { parseArgs } from 'node:util';
import { fuzz, reproduce } from './engine.js';
import { TARGETS } from './targets/index.js';

const { values } = parseArgs({
  options: {
    target: { type: 'string', multiple: true },
    runs: { type: 'string', default: '10000000' },
    seconds: { type: 'string' },
    seed: { type: 'string', default: '1' },
    repro: { type: 'string' },
    'save-corpus': { type: 'boolean', default: false },
  },
});
const names = TARGETS.map((t) => t.name);
const chosen = values.target ?? names;
for (const n of chosen) {
  if (!names.includes(n)) {
    console.error(`fuzz: unknown target "${n}" (known: ${names.join(', ')})`);
    process.exit(2);
  }
}
const targets = TARGETS.filter((t) => chosen.includes(t.name));

if (values.repro) {
  if (targets.length !== 1) {
    console.error('fuzz: --repro needs exactly one --target');
    process.exit(2);
  }
  const fault = await reproduce(targets[0]!, values.repro);
  const known = fault?.startsWith('known finding');
  console.log(fault ? (known ? fault : `FAULT: ${fault}`) : 'no fault');
  process.exit(fault && !known ? 1 : 0);
}

const runs = Number(values.runs);
const seconds = values.seconds === undefined ? Number.POSITIVE_INFINITY : Number(values.seconds);
const seed = Number(values.seed);
let failed = false;
for (const t of targets) {
  console.log(
    `fuzz ${t.name}: up to ${runs} inputs${Number.isFinite(seconds) ? ` or ${seconds} s` : ''}, seed ${seed}`,
  );
  const r = await fuzz(t, {
    runs,
    seconds,
    seed,
    saveCorpus: values['save-corpus'],
    log: (l) => console.log(l),
  });
  const known = [...r.known].map(([issue, k]) => `; known finding ${issue}: ${k.count} inputs`).join('');
  console.log(
    `fuzz ${t.name}: ${r.inputs} inputs in ${r.seconds.toFixed(1)} s (${Math.round(r.inputs / r.seconds)}/s), ` +
      `corpus ${r.corpus} (seeds ${r.seedCorpus}), statements ${r.statements.covered}/${r.statements.total}, ` +
      `branches ${r.branches.covered}/${r.branches.total}, ${r.fault ? 'FAULT' : 'no fault'}${known}`,
  );
  if (r.fault) failed = true;
}
process.exit(failed ? 1 : 0);
