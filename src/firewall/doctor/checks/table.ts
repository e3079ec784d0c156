// honeygate's own table: present when the config needs it, and as the config renders it
// (the comparison is plan-diff.ts's, shared with `firewall verify`).
import { tableDifferences } from '../../plan-diff.js';
import { FAMILY, TABLE, tableComment } from '../../render.js';
import { type Check, fail, ok, warn } from '../finding.js';
import { hasOurTable, ourTable } from '../query.js';

export const table: Check = (f) => {
  const C = 'table';
  if (f.nft.status !== 'ok') return [];
  const present = hasOurTable(f);
  const what = f.config.listeners.some((l) => l.tproxy)
    ? 'diverts nothing (no tproxy listener has divert:)'
    : 'has no tproxy listener';
  if (!f.plan) {
    return present
      ? [
          warn(
            C,
            `table ${FAMILY} ${TABLE} exists, but the config ${what} ` + 'and no transparent backend',
            `honeygate firewall remove -c ${f.file}`,
          ),
        ]
      : [ok(C, `the config ${what} and no transparent backend: it needs no firewall rules`)];
  }
  const live = ourTable(f);
  if (!live) {
    return [
      fail(
        C,
        `table ${FAMILY} ${TABLE} is missing: nothing is diverted to honeygate, ` +
          'and replies to transparent upstream connections are not routed back to it',
        `honeygate firewall apply -c ${f.file}`,
      ),
    ];
  }
  const problems = tableDifferences(f.plan, live).map((d) => d.text);
  if (problems.length) {
    return [
      fail(
        C,
        `table ${FAMILY} ${TABLE} differs from the config: ${problems.join('; ')}`,
        `honeygate firewall apply -c ${f.file}`,
      ),
    ];
  }
  return [
    ok(C, `table ${FAMILY} ${TABLE} is in place and matches the config (${tableComment(f.plan.hash)})`),
  ];
};
