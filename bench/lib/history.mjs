// One line per benchmark run in bench/results/history.md: the run's name, commit, Node
// version and its headline ratios (honeygate / HAProxy, best of the repeats, as in the
// report's tables). The full report of the latest run sits beside it; older ones are in
// git history.
import { appendFileSync, existsSync, writeFileSync } from 'node:fs';

export const HISTORY_HEADER = [
  '# Benchmark history',
  '',
  'One line per `npm run bench` run, appended by bench/run.mjs. Ratios are honeygate / HAProxy,',
  'best of the repeats; above 1 is better for rates, below 1 for memory and time. "1 core" is',
  'the pinned layout. A run that did not measure a figure shows —; a commit with -dirty or +',
  'was built with uncommitted changes. The latest full run is kept beside this file',
  "(RUN.md and RUN.json); every other run's report is in git history",
  '(`git log --all -- bench/results/RUN.md`).',
  '',
  '| run | commit | Node | new conns/s, 1 core | keep-alive, 1 core | bulk, 1 core | PROXY v2, 1 core | idle memory | burst | recorded % |',
  '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
];

function ratio(figure, target = 'honeygate', base = 'haproxy') {
  const a = figure?.targets?.[target]?.best;
  const b = figure?.targets?.[base]?.best;
  return typeof a === 'number' && typeof b === 'number' && b > 0 ? (a / b).toFixed(2) : '—';
}

/** The history line of one run's results object (as bench/run.mjs writes it to NAME.json). */
export function historyLine(name, results) {
  const pinned = results.layouts?.find((l) => l.id === 'pinned')?.figures;
  const built = results.machine?.honeygate ?? '';
  const hash = /commit ([0-9a-f]+(?:-dirty)?)/.exec(built)?.[1];
  const commit = hash ? `${hash}${/uncommitted|mid-edit/.test(built) ? '+' : ''}` : '—';
  const done = results.completeness ?? [];
  const requests = done.reduce((n, c) => n + c.requests, 0);
  const lost = done.reduce((n, c) => n + c.missing + c.dropped, 0);
  const recorded = requests > 0 ? `${Number((100 * (1 - lost / requests)).toFixed(2))}` : '—';
  const cells = [
    name,
    commit,
    results.machine?.node ?? '—',
    ratio(pinned?.connrate),
    ratio(pinned?.keepalive),
    ratio(pinned?.bulk),
    ratio(pinned?.connrate, 'honeygate-pp', 'haproxy-pp'),
    ratio(results.idleMemory),
    ratio(results.burst),
    recorded,
  ];
  return `| ${cells.join(' | ')} |`;
}

/** Appends a run's line to the history file, writing its header first when it is new. */
export function appendHistory(file, name, results) {
  if (!existsSync(file)) writeFileSync(file, `${HISTORY_HEADER.join('\n')}\n`);
  appendFileSync(file, `${historyLine(name, results)}\n`);
}
