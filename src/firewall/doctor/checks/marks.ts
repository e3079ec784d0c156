// honeygate's mark bits against everyone else's: ip rules testing the same bits, and other
// tables' rules that set or clear them (packet or conntrack mark).
import { isOurRule } from '../../apply.js';
import { FOREIGN_MARK_BITS } from '../../marks.js';
import { hex } from '../../render.js';
import { type Facts, transparentServers } from '../facts.js';
import { type Check, type Finding, ok, ruleText, warn } from '../finding.js';
import { ourPrio, ourRuleState, publishedBy, rulesRead } from '../query.js';

function popcount(n: number): number {
  let c = 0;
  for (let v = n >>> 0; v; v >>>= 1) c += v & 1;
  return c;
}

function freeMark(f: Facts): number | null {
  let used = FOREIGN_MARK_BITS;
  for (const family of [4, 6] as const) {
    for (const r of f.rules[family] ?? []) if (r.fwmark !== null && !r.not) used |= r.fwmark & r.fwmask;
  }
  // a constant (`meta mark set 0x4000`) clears every other bit: that says nothing about the bit's owner
  for (const m of f.foreign.marks) used |= m.set | (popcount(m.clear) <= 16 ? m.clear : 0);
  for (const bit of [0x1000, 0x2000, 0x10, 0x80, 0x1, 0x2]) if ((used & bit) === 0) return bit;
  return null;
}

export const fwmark: Check = (f) => {
  const C = 'fwmark';
  if (!f.plan) return [];
  const fw = f.config.firewall;
  const mask = fw.mask;
  const out: Finding[] = [];
  const free = freeMark(f);
  const fix =
    `pick unused bits: honeygate firewall remove -c ${f.file}; set firewall: ` +
    `{ mark: ${free !== null ? hex(free) : 'BITS'} } in ${f.file}; honeygate ` +
    `firewall apply -c ${f.file}`;
  for (const family of [4, 6] as const) {
    for (const r of f.rules[family] ?? []) {
      if (r.fwmark === null) continue;
      // Bits both rules test: when the two marks agree on them, each rule can match the
      // other's packets; when they disagree (`fwmark 0x1` vs 0x1000), the rules exclude each other.
      const common = (r.fwmask & mask) >>> 0;
      if (common === 0 || (r.fwmark & common) >>> 0 !== (fw.mark & common) >>> 0) continue;
      if (
        isOurRule(r.raw as Parameters<typeof isOurRule>[0], fw) ||
        ourRuleState(f, family).others.includes(r)
      ) {
        continue;
      }
      out.push(
        warn(
          C,
          `IPv${family}: rule \`${ruleText(r)}\` tests bits ${hex(common)} ` +
            `of honeygate's mark ${hex(fw.mark)}/${hex(mask)} for the same values: ` +
            `packets marked by the software that owns it can match honeygate's ` +
            `rule (and be delivered to this host), and honeygate's packets can match it`,
          fix,
        ),
      );
    }
  }
  // The conntrack mark only matters for transparent dials that another table DNATs.
  const published = transparentServers(f.config).some((s) => publishedBy(f, s.host, s.port));
  for (const m of f.foreign.marks) {
    const sets = (m.set & mask) >>> 0;
    const clears = (m.clear & mask) >>> 0;
    const prerouting = m.hooks.filter((h) => h.hook === 'prerouting');
    const unknown = m.hooks.length === 0; // a chain no base chain reaches (yet)
    let harm: string | null = null;
    let how = fix;
    if (sets && m.key === 'meta') {
      harm =
        `sets bits ${hex(sets)} of honeygate's mask ${hex(mask)} on packets: ` +
        `those match honeygate's ip rule and are routed to this host (table ` +
        `${fw.table}: local default) instead of their destination`;
    } else if (sets && m.key === 'ct') {
      harm =
        `sets bits ${hex(sets)} of honeygate's mask ${hex(mask)} in conntrack ` +
        `marks: every packet of those connections then gets honeygate's mark ` +
        '(first rule of its prerouting chain) and is routed to this host';
    } else if (clears && m.key === 'meta' && (unknown || prerouting.some((h) => h.prio >= ourPrio))) {
      harm =
        `can clear bits ${hex(clears)} of honeygate's mark after honeygate's ` +
        `prerouting chain (priority ${ourPrio}) set them, so diverted packets ` +
        'are routed on instead of reaching honeygate';
      how =
        `run that chain before honeygate's (priority below ${ourPrio}), or ` +
        `make the rule keep bits ${hex(mask)} (\`meta mark set meta mark & ... | ...\`)`;
    } else if (
      clears &&
      m.key === 'ct' &&
      published &&
      !m.hooks.every((h) => h.hook === 'output' && h.prio < -140)
    ) {
      harm =
        `can clear bits ${hex(clears)} of the conntrack mark honeygate's ` +
        'output chain sets on transparent upstream connections, so replies ' +
        'that another table un-NATs late (Docker-published ports) no longer come back';
      how =
        `dial the containers' own addresses instead of published ports (see ` +
        'transparent-backends): then the conntrack mark is not needed';
    }
    if (!harm) continue;
    out.push(warn(C, `${m.where} (\`${m.text}\`) ${harm}`, how));
  }
  if (out.length === 0) {
    const what = rulesRead(f) ? 'ip rule or firewall rule' : 'ip rule (firewall rules unread)';
    out.push(ok(C, `no other ${what} uses the bits of honeygate's mask ${hex(mask)}`));
  }
  return out;
};
