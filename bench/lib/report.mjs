// Turns the results object into the markdown tables printed at the end and kept in
// bench/results/<date>.md.

const num = (v, digits) =>
  v === null || v === undefined
    ? '—'
    : v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

const signed = (v, digits) => `${v < 0 ? '−' : '+'}${num(Math.abs(v), digits)}`;

/** "best (median)" of a summarized target, or — when it did not run. */
function cell(s, digits) {
  if (!s || s.best === null) return '—';
  return `${num(s.best, digits)} (${num(s.median, digits)})`;
}

function ratio(hg, ha) {
  if (!hg || !ha || hg.best === null || ha.best === null || !ha.best || !ha.median) return '—';
  return `**${num(hg.best / ha.best, 2)}** (${num(hg.median / ha.median, 2)})`;
}

/**
 * What a proxy adds to the latency, honeygate's over HAProxy's: (p - direct's p) of each,
 * best against best and median against median (the issue's latency target). — where
 * HAProxy's added time is not above zero (within direct's own noise).
 */
function addedRatio(t, hg, ha) {
  const d = t.direct;
  const one = (k) => {
    if (!d || !hg || !ha || d[k] === null || hg[k] === null || ha[k] === null) return null;
    const base = ha[k] - d[k];
    return base > 0 ? (hg[k] - d[k]) / base : null;
  };
  const b = one('best');
  const m = one('median');
  if (b === null && m === null) return '—';
  return `**${b === null ? '—' : num(b, 2)}** (${m === null ? '—' : num(m, 2)})`;
}

function row(cells) {
  return `| ${cells.join(' | ')} |`;
}

/** The rows of one layout (pinned or shared): rates, throughput, latency, PROXY v2. */
function layoutTable(layout) {
  const f = layout.figures;
  const workers = layout.honeygateWorkers > 1 ? ` (${layout.honeygateWorkers} workers)` : '';
  const lines = [
    row(['figure', 'direct (nginx)', 'HAProxy', `honeygate${workers}`, 'honeygate / HAProxy']),
    row(['---', '---:', '---:', '---:', '---:']),
  ];
  const plain = (title, fig, digits) => {
    if (!fig) return;
    const t = fig.targets;
    lines.push(
      row([
        title,
        cell(t.direct, digits),
        cell(t.haproxy, digits),
        cell(t.honeygate, digits),
        ratio(t.honeygate, t.haproxy),
      ]),
    );
  };
  plain(`new connections/s (Connection: close, 1 KiB, ${f.connrate?.connections} conns)`, f.connrate, 0);
  plain(`keep-alive requests/s (1 KiB, ${f.keepalive?.connections} conns)`, f.keepalive, 0);
  plain(`bulk MB/s (64 MiB file, ${f.bulk?.connections} conns)`, f.bulk, 0);
  plain('proxy CPU µs per new connection', f['connrate-cpu'], 1);
  plain('proxy CPU µs per keep-alive request', f['keepalive-cpu'], 2);
  plain('proxy CPU s per GB (bulk)', f['bulk-cpu'], 2);
  for (const p of ['p50', 'p99']) {
    const fig = f[`latency-${p}`];
    if (!fig) continue;
    const t = fig.targets;
    const added = (s) =>
      s && t.direct && s.best !== null && t.direct.best !== null
        ? `, ${signed(s.best - t.direct.best, 3)}`
        : '';
    lines.push(
      row([
        `latency ${p} ms, ${fig.rate} new conns/s (added vs direct)`,
        cell(t.direct, 3),
        `${cell(t.haproxy, 3)}${added(t.haproxy)}`,
        `${cell(t.honeygate, 3)}${added(t.honeygate)}`,
        ratio(t.honeygate, t.haproxy),
      ]),
    );
    lines.push(
      row([
        `latency ${p}: added over direct, honeygate / HAProxy`,
        '—',
        '—',
        '—',
        addedRatio(t, t.honeygate, t.haproxy),
      ]),
    );
  }
  // PROXY v2 out: HAProxy send-proxy-v2 vs honeygate source: proxy-v2, into nginx `proxy_protocol`.
  const pp = (title, fig, digits) => {
    if (!fig?.targets['haproxy-pp']) return;
    const t = fig.targets;
    lines.push(
      row([
        `PROXY v2: ${title}`,
        '—',
        cell(t['haproxy-pp'], digits),
        cell(t['honeygate-pp'], digits),
        ratio(t['honeygate-pp'], t['haproxy-pp']),
      ]),
    );
  };
  pp('new connections/s', f.connrate, 0);
  pp('proxy CPU µs per new connection', f['connrate-cpu'], 1);
  pp('latency p50 ms', f['latency-p50'], 3);
  pp('latency p99 ms', f['latency-p99'], 3);
  // The native relay with no JS per flow (bench/relay-alone.mjs): the floor under honeygate.
  const alone = (title, fig, digits) => {
    if (!fig?.targets.relay) return;
    const t = fig.targets;
    lines.push(
      row([
        `relay alone: ${title}`,
        '—',
        cell(t.haproxy, digits),
        cell(t.relay, digits),
        ratio(t.relay, t.haproxy),
      ]),
    );
  };
  alone('new connections/s', f.connrate, 0);
  alone('proxy CPU µs per new connection', f['connrate-cpu'], 1);
  const fig = f['latency-p99'];
  if (fig?.targets.relay) {
    alone(`latency p99 ms, ${fig.rate} new conns/s`, fig, 3);
    lines.push(
      row([
        'relay alone: latency p99 added over direct, relay / HAProxy',
        '—',
        '—',
        '—',
        addedRatio(fig.targets, fig.targets.relay, fig.targets.haproxy),
      ]),
    );
  }
  // The crash-window write-ahead: honeygate as shipped against HONEYGATE_JOURNAL=off (in the
  // HAProxy column); the ratio is what the start journal leaves of the rate (target >= 0.97).
  const journal = (title, fig, digits) => {
    if (!fig?.targets['honeygate-nojournal']) return;
    const t = fig.targets;
    lines.push(
      row([
        `start journal on vs off: ${title}`,
        '—',
        cell(t['honeygate-nojournal'], digits),
        cell(t.honeygate, digits),
        ratio(t.honeygate, t['honeygate-nojournal']),
      ]),
    );
  };
  journal('new connections/s', f.connrate, 0);
  journal('proxy CPU µs per new connection', f['connrate-cpu'], 1);
  // HAProxy logging every connection (the fields honeygate stores, first bytes included)
  // through a local syslog socket to a file, in the HAProxy column; targets >= 1.0.
  const logging = (title, fig, digits) => {
    if (!fig?.targets['haproxy-log']) return;
    const t = fig.targets;
    lines.push(
      row([
        `logging HAProxy: ${title}`,
        '—',
        cell(t['haproxy-log'], digits),
        cell(t.honeygate, digits),
        ratio(t.honeygate, t['haproxy-log']),
      ]),
    );
  };
  logging('new connections/s', f.connrate, 0);
  logging('proxy CPU µs per new connection', f['connrate-cpu'], 1);
  // The fleet's nats sink beside SQLite against SQLite alone (in the HAProxy column); the
  // ratio is what the outbox leaves of the rate (target >= 0.95).
  const nats = (title, fig, digits) => {
    if (!fig?.targets['honeygate-nats']) return;
    const t = fig.targets;
    lines.push(
      row([
        `nats sink on vs off: ${title}`,
        '—',
        cell(t.honeygate, digits),
        cell(t['honeygate-nats'], digits),
        ratio(t['honeygate-nats'], t.honeygate),
      ]),
    );
  };
  nats('new connections/s', f.connrate, 0);
  nats('proxy CPU µs per new connection', f['connrate-cpu'], 1);
  if (f.haproxyLog) {
    const runs = f.haproxyLog.filter(Boolean);
    const missing = runs.reduce((n, r) => n + r.missing, 0);
    lines.push(
      '',
      `Logging HAProxy: \`log-format\` with the fields honeygate stores (the first 64 bytes included) to a unix ` +
        `syslog socket, socat appending each datagram to a file, both on the proxy's CPUs (their CPU counted ` +
        `together). Lines in the file per run: ${runs.map((r) => `${r.lines}/${r.requests}`).join(', ')} ` +
        `requests (${missing === 0 ? 'one line per connection' : `${missing} connections without a line`}).`,
    );
  }
  if (f.nats) {
    const c = f.nats.collector;
    lines.push(
      '',
      `nats sink: at most ${f.nats.leftBehind} events left in the outbox 60 s after a run's load (0 = kept up; ` +
        `the outbox drained within ${Math.max(...f.nats.drainMs)} ms of the load's end). Collector into one SQLite store: ` +
        `${c.events} events in ${c.seconds.toFixed(1)} s = ${c.rate.toFixed(0)} events/s (start-up included).`,
    );
  }
  return lines.join('\n');
}

/** "Many sources": new connections from N addresses against one, per proxy (bench/conn-load.c). */
function manySourcesSection(ms) {
  const n = ms.sources;
  const out = ['', `### Many sources: ${num(n, 0)} attacker addresses vs 1 (${ms.layout})`, ''];
  out.push(row(['figure', '1 source', `${num(n, 0)} sources`, `${num(n, 0)} / 1`]));
  out.push(row(['---', '---:', '---:', '---:']));
  for (const t of ['haproxy', 'honeygate']) {
    const name = t === 'haproxy' ? 'HAProxy' : 'honeygate';
    const one = (fig) => fig.targets[`${t} 1`];
    const many = (fig) => fig.targets[`${t} ${n}`];
    out.push(
      row([
        `${name}: new connections/s (${ms.connections} conns)`,
        cell(one(ms.rate), 0),
        cell(many(ms.rate), 0),
        ratio(many(ms.rate), one(ms.rate)),
      ]),
    );
    out.push(
      row([
        `${name}: proxy CPU µs per connection`,
        cell(one(ms.cpu), 1),
        cell(many(ms.cpu), 1),
        ratio(many(ms.cpu), one(ms.cpu)),
      ]),
    );
  }
  const raw = (sources) => ms.rate.targets[`honeygate ${sources}`]?.raw ?? [];
  const addresses = raw(n).map((r) => r.events?.sources ?? 0);
  const lost = [...raw(1), ...raw(n)].reduce(
    (a, r) => a + (r.events?.missing ?? 0) + (r.events?.dropped ?? 0),
    0,
  );
  const perRow = (sources) =>
    raw(sources)
      .filter((r) => r.probe)
      .map((r) => ((r.probe.sqlite.cpuMs * 1000) / Math.max(1, r.probe.sqlite.rows)).toFixed(2));
  out.push(
    '',
    `One client for every case (\`bench/conn-load.c\`: ${ms.connections} connections in flight, Connection: close, ` +
      `each bound to the next of ${num(n, 0)} addresses 127.1.0.1 + i, or left to the kernel for 1 source). ` +
      `Distinct source addresses in honeygate's events per run: ${addresses.join(', ')}; ` +
      `${lost === 0 ? 'every flow recorded' : `${lost} flows not recorded`}. Target: ${num(n, 0)} / 1 ≥ 0.9 for honeygate.` +
      (perRow(1).length
        ? ` SQLite batch CPU per row (BENCH_PROBE=1; the rollup keeps a row per source and hour): 1 source ${perRow(1).join(', ')} µs, ${num(n, 0)} sources ${perRow(n).join(', ')} µs.`
        : ''),
  );
  return out;
}

/** "Transparent mode (namespaces)": honeygate vs HAProxy through TPROXY, then the go-mmproxy rows and the burst. */
function transparentSection(tp) {
  const out = ['', '### Transparent mode (namespaces)', ''];
  if (tp.status !== 'measured') {
    out.push(tp.status);
    return out;
  }
  out.push(`${tp.topology}. ${tp.layout}.`);
  const f = tp.figures;
  const lines = [];
  const both = (title, fig, digits, a, b, withDirect) => {
    if (!fig?.targets[a]) return;
    const t = fig.targets;
    lines.push(
      row([
        title,
        withDirect ? cell(t.direct, digits) : '—',
        cell(t[a], digits),
        cell(t[b], digits),
        ratio(t[b], t[a]),
      ]),
    );
  };
  const section = (label, a, b, withDirect) => {
    both(
      `${label}new connections/s (Connection: close, 1 KiB, ${f.connrate?.connections} conns)`,
      f.connrate,
      0,
      a,
      b,
      withDirect,
    );
    both(
      `${label}keep-alive requests/s (1 KiB, ${f.keepalive?.connections} conns)`,
      f.keepalive,
      0,
      a,
      b,
      withDirect,
    );
    both(`${label}bulk MB/s (64 MiB, ${f.bulk?.connections} conns, keep-alive)`, f.bulk, 0, a, b, withDirect);
    both(`${label}proxy CPU µs per new connection`, f['connrate-cpu'], 1, a, b, false);
    both(`${label}proxy CPU µs per keep-alive request`, f['keepalive-cpu'], 2, a, b, false);
    for (const p of ['p50', 'p99'])
      both(
        `${label}latency ${p} ms, ${f[`latency-${p}`]?.rate} new conns/s`,
        f[`latency-${p}`],
        3,
        a,
        b,
        withDirect,
      );
  };
  section('', 'haproxy', 'honeygate', true);
  section('PROXY v2 → go-mmproxy: ', 'haproxy-mm', 'honeygate-mm', false);
  if (tp.burst) {
    const t = tp.burst.targets;
    lines.push(
      row([
        `burst: ${num(tp.burst.ports, 0)} ports through one TPROXY listener, s until all accepted and recorded`,
        '—',
        cell(t.haproxy, 2),
        cell(t.honeygate, 2),
        ratio(t.honeygate, t.haproxy),
      ]),
    );
  }
  if (lines.length) {
    out.push('');
    out.push(row(['figure', 'direct (routed, no proxy)', 'HAProxy', 'honeygate', 'honeygate / HAProxy']));
    out.push(row(['---', '---:', '---:', '---:', '---:']));
    out.push(...lines);
  }
  out.push('');
  out.push(
    'HAProxy: `bind 127.0.0.1:PORT transparent` fed by hand-written nft TPROXY rules, `source 0.0.0.0 usesrc clientip`; ' +
      'honeygate: a `tproxy` listener, `source: transparent`, its own rules (`run --manage-firewall`). ' +
      'PROXY rows: the same listeners, HAProxy `send-proxy-v2` / honeygate `source: proxy-v2` to go-mmproxy ' +
      '(GOMAXPROCS=1, on the load core) in front of nginx. Each decoy address goes to one proxy; both run throughout.',
  );
  out.push(...kernelSection(tp));
  const seen = Object.entries(tp.remoteAddress ?? {});
  if (seen.length) {
    out.push('');
    out.push(
      `Client address nginx saw (its \`$remote_addr\`, one request per target): ${seen
        .map(([t, s]) => `${t} ${s.seen ?? 'none'}${s.ok ? '' : ' (**not the attacker**)'}`)
        .join(', ')}.`,
    );
  }
  if (tp.completeness?.length) {
    out.push('');
    out.push(
      `Event completeness (fastest new-connection run): ${tp.completeness
        .map(
          (c) =>
            `${c.target} ${num(c.events, 0)} events for ${num(c.requests, 0)} requests (${num(c.errors, 0)} socket errors, ` +
            `${num(c.missing, 0)} missing, ${num(c.dropped, 0)} dropped: ${c.complete ? 'complete' : '**incomplete**'})`,
        )
        .join('; ')}.`,
    );
  }
  if (tp.burst) {
    const r = (t) => tp.burst.targets[t]?.raw ?? [];
    out.push('');
    out.push(
      `Burst: a fresh proxy per run, ports 1-${tp.burst.ports} of one decoy address, ${tp.burst.window} connections at a time, ` +
        `forwarded to nginx on ${tp.burst.servers} ports (round robin); "recorded": honeygate rows in SQLite, HAProxy \`option tcplog\` lines. ` +
        `Client errors per run: HAProxy ${r('haproxy')
          .map((x) => x.errors)
          .join(', ')}; honeygate ${r('honeygate')
          .map((x) => x.errors)
          .join(', ')}. ${busyNote(tp.burst)}`,
    );
  }
  return out;
}

/** Kernel path (engine: kernel) beside direct, HAProxy usesrc clientip and honeygate's user space. */
function kernelSection(tp) {
  const f = tp.figures;
  const out = [];
  const lines = [];
  const kernelRow = (title, fig, digits, target) => {
    const t = fig?.targets;
    if (!t?.kernel) return;
    lines.push(
      row([
        title,
        cell(t.direct, digits),
        cell(t.haproxy, digits),
        cell(t.honeygate, digits),
        cell(t.kernel, digits),
        ratio(t.kernel, t.haproxy),
        ratio(t.kernel, t.direct),
        target,
      ]),
    );
  };
  kernelRow(
    `new connections/s (Connection: close, 1 KiB, ${f.connrate?.connections} conns)`,
    f.connrate,
    0,
    'kernel ≥ 2× HAProxy',
  );
  kernelRow(`bulk MB/s (64 MiB, ${f.bulk?.connections} conns)`, f.bulk, 0, 'kernel ≥ 0.95× direct');
  kernelRow(`keep-alive requests/s (1 KiB, ${f.keepalive?.connections} conns)`, f.keepalive, 0, '');
  for (const p of ['p50', 'p99'])
    kernelRow(`latency ${p} ms, ${f[`latency-${p}`]?.rate} new conns/s`, f[`latency-${p}`], 3, '');
  const kb = tp.kernelBurst;
  if (!lines.length && !kb) return out;
  out.push('');
  out.push('#### The kernel path (`engine: kernel`)');
  if (tp.load) out.push('', loadNote(tp.load));
  if (lines.length) {
    out.push('');
    out.push(
      row([
        'figure',
        'direct',
        'HAProxy usesrc clientip',
        'honeygate user space',
        'honeygate kernel',
        'kernel / HAProxy',
        'kernel / direct',
        'target',
      ]),
    );
    out.push(row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---']));
    out.push(...lines);
  }
  const c = tp.completeness?.find((x) => x.target === 'kernel');
  if (c) {
    out.push('');
    out.push(
      `Kernel flows recorded (fastest new-connection run, ${num(c.rate, 0)}/s): ${num(c.events, 0)} events for ` +
        `${num(c.flows, 0)} flows the DNAT rules counted (${num(c.requests, 0)} wrk requests, ${num(c.errors, 0)} socket errors; ` +
        `${num(c.missing, 0)} missing), all in ${num(c.recordedSecondsAfterLoad, 1)} s after the load stopped ` +
        `(conntrack forgets a closed flow 1 s after its close): ${c.complete ? 'complete' : '**incomplete**'}.`,
    );
  }
  if (kb) {
    const runs = kb.targets.kernel?.raw ?? [];
    out.push('');
    out.push(
      `Kernel burst: ports 1-${num(kb.ports, 0)} of the kernel decoy, one connection each, ${kb.window} at a time, DNATed ` +
        `to nginx on ${kb.servers} ports (round robin), a fresh honeygate per run; s from the first connect until every ` +
        `flow is in SQLite: ${cell(kb.targets.kernel, 2)} (target < 2 s). Per run: ${runs
          .map(
            (x) =>
              `${num(x.recorded, 0)}/${num(x.flows, 0)} flows recorded in ${num(x.seconds, 2)} s, client done in ` +
              `${num(x.clientSeconds, 2)} s${drained(x)}, ${num(x.errors, 0)} errors, ${num(x.overruns, 0)} conntrack overruns, ` +
              `CPUs busy ${Object.values(x.cpuBusy ?? {}).join('/')} %`,
          )
          .join(
            '; ',
          )}. A kernel flow is recorded when conntrack forgets it: 1 s of TIME_WAIT after the close, ` +
        'plus up to 250 ms to the next sweep (docs/kernel.md): the last record trails the last connection by that, ' +
        'and by whatever backlog the recorder still has to store then.',
    );
  }
  out.push('');
  out.push(
    'Kernel: a third `tproxy` listener with its own decoy and divert, one route to a backend with `engine: kernel` ' +
      "(nft DNAT to nginx's own address for it, 192.0.2.102, in the same honeygate process as the user-space rows); its flows are " +
      "counted by the DNAT rules' counters and recorded from conntrack. Its CPU is the gateway's softirq, on whichever core " +
      'the packets arrive: no per-process CPU row.',
  );
  return out;
}

/** When, after the client, conntrack had forgotten every flow (from the burst's once-a-second samples). */
function drained(x) {
  const empty = (x.timeline ?? []).filter((p) => p.conntrackEntries === 0).sort((a, b) => a.at - b.at)[0];
  return empty ? `, conntrack empty ${num(empty.at - x.clientSeconds, 1)} s later at most` : '';
}

/** The load average before and after the transparent figures: a shared machine makes them noisy. */
function loadNote(load) {
  const fmt = (l) => l.map((v) => num(v, 2)).join(' / ');
  return (
    `Load average (1 / 5 / 15 min) ${fmt(load.before)} before these figures, ${fmt(load.after)} after, on ` +
    `${load.cpus} CPUs${load.before[0] > 1 ? ': **measured on a loaded machine** (other jobs ran beside it), the figures are noisy' : ''}.`
  );
}

/**
 * "What bounds the new-connection rate": the CPU HAProxy spends per new connection less what
 * the relay alone spends is all honeygate may add per flow and still match HAProxy's rate on
 * one core; the recording floor is the least that storing the flow costs.
 */
function floorSection(results) {
  const floor = results.recordingFloor;
  if (!floor) return [];
  const out = ['', '### What bounds the new-connection rate (1 core)', ''];
  const cpu = results.layouts.find((l) => l.id === 'pinned')?.figures['connrate-cpu']?.targets;
  const lines = [];
  const line = (what, s) => lines.push(row([what, cell(s, 1)]));
  if (cpu?.haproxy && cpu.relay) {
    line('HAProxy', cpu.haproxy);
    line('relay alone', cpu.relay);
    line('honeygate', cpu.honeygate);
  }
  line('one events row into SQLite, from C (the recording floor)', floor.cpuUs);
  out.push(row(['CPU µs per new connection / per row', 'best (median)']));
  out.push(row(['---', '---:']));
  out.push(...lines);
  out.push('');
  const note = [
    `Recording floor: \`bench/sqlite-floor.c\`, honeygate's schema (${floor.indexes} indexes), pragmas and ` +
      `transaction size (${num(floor.rowsPerTransaction, 0)} rows), one prepared INSERT per row, ${num(floor.rows, 0)} rows, ` +
      `SQLite ${floor.sqlite}, on the proxy's core: the least any proxy pays per flow to keep each flow in SQLite.`,
  ];
  if (cpu?.haproxy?.best && cpu.relay?.best) {
    const headroom = cpu.haproxy.best - cpu.relay.best;
    const reach = cpu.haproxy.best / (cpu.relay.best + floor.cpuUs.best);
    const room =
      headroom > 0
        ? `honeygate may spend ${num(headroom, 1)} µs per flow above its relay (best runs)`
        : `the relay alone used ${num(-headroom, 1)} µs more than HAProxy per connection in this run's best runs, ` +
          'which leaves nothing to spend above it';
    note.push(
      `Headroom: to match HAProxy's rate, ${room}; the row alone costs ${num(floor.cpuUs.best, 1)} µs. ` +
        `With no other work per flow, the relay plus the row would reach ${num(reach, 2)}× HAProxy's rate.`,
    );
  }
  out.push(note.join(' '));
  return out;
}

/** UDP: datagrams/s answered through honeygate vs nginx's stream UDP proxy (target >= 1.0x), memory per idle flow. */
function udpSection(u) {
  if (!u.rate && !u.memory) return u.transparent ? udpTransparentSection(u.transparent) : [];
  const out = ['', `### UDP: honeygate vs nginx \`stream\` UDP proxy (${u.layout})`, ''];
  out.push(row(['figure', 'direct (no proxy)', 'nginx', 'honeygate', 'honeygate / nginx', 'target']));
  out.push(row(['---', '---:', '---:', '---:', '---:', '---:']));
  const line = (title, fig, digits, target) => {
    if (!fig) return;
    const t = fig.targets;
    out.push(
      row([
        title,
        cell(t.direct, digits),
        cell(t['nginx-udp'], digits),
        cell(t['honeygate-udp'], digits),
        ratio(t['honeygate-udp'], t['nginx-udp']),
        target,
      ]),
    );
  };
  line(`datagrams/s answered (${u.flows} flows × ${u.window} in flight, ${u.size} B)`, u.rate, 0, '≥ 1.0');
  line('proxy CPU µs per datagram answered', u.cpu, 2, '');
  if (u.memory) line(`memory per idle UDP flow, KiB (${u.memory.flows} flows)`, u.memory, 2, '');
  out.push('');
  out.push(
    'bench/udp-load.c on the load core sends to the proxy on the proxy core, which forwards to a UDP echo server ' +
      '(the same C program) on the load core; each flow keeps its datagrams in flight and sends one more per answer. ' +
      'nginx: `listen ... udp`, `proxy_pass` to the echo, one worker. honeygate: a `transport: udp` bind listener, ' +
      '`forward` with `source: none`, the amplification guard on (its per-source caps raised: all flows come from ' +
      '127.0.0.1), each flow recorded when it ends. Memory: RSS of the proxy (nginx: its worker) before and after ' +
      'the idle flows, one datagram answered each.',
  );
  if (u.transparent) out.push(...udpTransparentSection(u.transparent));
  return out;
}

/** UDP catch-all: honeygate (tproxy, transparent; proxy-v2 -> go-mmproxy) vs nginx transparent (target >= 1.0x). */
function udpTransparentSection(u) {
  const out = ['', '### UDP transparent: the catch-all, honeygate vs nginx transparent vs go-mmproxy', ''];
  if (u.status !== 'measured') {
    out.push(u.status);
    return out;
  }
  out.push(
    row([
      'figure',
      'direct (no proxy)',
      'nginx transparent',
      'honeygate transparent',
      'honeygate / nginx',
      'target',
      'honeygate -> go-mmproxy',
      'go-mmproxy alone',
    ]),
  );
  out.push(row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:']));
  const t = u.rate.targets;
  out.push(
    row([
      `datagrams/s answered (${u.flows} flows × ${u.window} in flight, ${u.size} B)`,
      cell(t.direct, 0),
      cell(t.nginx, 0),
      cell(t.honeygate, 0),
      ratio(t.honeygate, t.nginx),
      '≥ 1.0',
      cell(t['honeygate-mm'], 0),
      '',
    ]),
  );
  const c = u.cpu.targets;
  out.push(
    row([
      'proxy CPU µs per datagram answered',
      '',
      cell(c.nginx, 2),
      cell(c.honeygate, 2),
      ratio(c.honeygate, c.nginx),
      '',
      cell(c['honeygate-mm'], 2),
      cell(c['go-mmproxy'], 2),
    ]),
  );
  const d = u.drops?.targets;
  if (d) {
    out.push(
      row([
        'datagrams dropped for a full receive buffer, per run (gateway + honeypot)',
        cell(d.direct, 0),
        cell(d.nginx, 0),
        cell(d.honeygate, 0),
        '',
        '',
        cell(d['honeygate-mm'], 0),
        '',
      ]),
    );
  }
  const seen = Object.entries(u.source)
    .map(([k, v]) => `${k} ${v.seen ?? 'nothing'}${v.ok ? '' : ' (NOT the attacker)'}`)
    .join(', ');
  out.push('');
  out.push(
    `Source address the echo honeypot saw: ${seen}. ` +
      `In the namespaces of the transparent figures (${u.layout}): bench/udp-load.c in the attacker namespace aims at a ` +
      'decoy address nobody owns (port 53; the direct row: the echo itself, routed through the gateway); the proxy in ' +
      'the gateway namespace sends each datagram on from the attacker address to the echo (bench/udp-load.c) in the ' +
      'honeypot namespace, and the answer comes back the same way. honeygate: a `transport: udp` `tproxy` listener ' +
      '(its divert made by `run --manage-firewall`), `forward` with `source: transparent`, the amplification guard on ' +
      '(per-source caps raised: all flows come from one address). nginx: `listen ... udp` with the decoy DNATed to it ' +
      '(nginx has no transparent listener, so it could not answer from the decoy address otherwise), `proxy_bind ' +
      '$remote_addr transparent`, one worker. go-mmproxy is a receiving end, not a gateway: its row is honeygate ' +
      '`source: proxy-v2` -> `go-mmproxy -p udp` -> an echo on the honeypot loopback, as an operator deploys it; its ' +
      'CPU column is go-mmproxy alone (GOMAXPROCS=1, load core). Conntrack is flushed before each run. ' +
      `Load average ${u.load.before.map((x) => x.toFixed(2)).join(' ')} before, ` +
      `${u.load.after.map((x) => x.toFixed(2)).join(' ')} after (${u.load.cpus} CPUs).`,
  );
  return out;
}

/**
 * "Sensor -> hub": honeygate's tunnel against HAProxy -> HAProxy over TLS, with the issue's
 * targets beside each ratio (new connections/s >= 1.5x, bulk >= 0.9x, idle memory <= 2x).
 */
function tunnelSection(tn) {
  const out = ['', `### Sensor → hub: honeygate's tunnel vs HAProxy → HAProxy over TLS (${tn.layout})`, ''];
  const lines = [];
  const line = (title, fig, digits, target) => {
    if (!fig) return;
    const t = fig.targets;
    lines.push(
      row([
        title,
        cell(t['haproxy-tls'], digits),
        cell(t['honeygate-tunnel'], digits),
        ratio(t['honeygate-tunnel'], t['haproxy-tls']),
        target,
      ]),
    );
  };
  const f = tn.figures;
  line(
    `new connections/s (Connection: close, 1 KiB, ${f.connrate?.connections} conns)`,
    f.connrate,
    0,
    '≥ 1.5',
  );
  line(`bulk MB/s (64 MiB file, ${f.bulk?.connections} conns)`, f.bulk, 0, '≥ 0.9');
  line('CPU µs per new connection, both processes', f['connrate-cpu'], 1, '');
  line('CPU s per GB (bulk), both processes', f['bulk-cpu'], 2, '');
  const m = tn.idleMemory;
  if (m) {
    line(`memory per idle flow, sensor side, KiB (${m.flows} flows)`, m.sensor, 2, '');
    line(`memory per idle flow, hub side, KiB (${m.flows} flows)`, m.hub, 2, '');
    line('memory per idle flow, both sides, KiB', m.pair, 2, '≤ 2');
  }
  out.push(row(['figure', 'HAProxy → HAProxy (TLS)', 'sensor → hub (tunnel)', 'tunnel / HAProxy', 'target']));
  out.push(row(['---', '---:', '---:', '---:', '---:']));
  out.push(...lines);
  out.push('');
  out.push(
    'attacker (wrk) → front → back → nginx `proxy_protocol` port, every process of both pairs on the proxy core. ' +
      'HAProxy: the front `server ... send-proxy-v2 ssl verify none` (one TLS connection per flow, its session ' +
      'resumed as HAProxy does by default), the back `bind ... accept-proxy ssl crt` and `send-proxy-v2` to nginx, ' +
      'TCP mode, nbthread 1 each. honeygate: a sensor (bind listener, `tunnel:` backend) and a hub (tunnel listener, ' +
      '`source: proxy-v2` to nginx): one mutual-TLS 1.3 HTTP/2 connection, one stream per flow, both recording every ' +
      'flow in SQLite. Certificates from `honeygate pki` (ECDSA P-256); HAProxy serves the hub certificate. CPU: ' +
      'both processes of the pair. Memory: a fresh pair per run, RSS of each process before and after the idle ' +
      'flows (one keep-alive request each, then idle).',
  );
  if (tn.completeness?.length) {
    out.push('');
    out.push(
      `Event completeness (fastest new-connection run): ${tn.completeness
        .map(
          (c) =>
            `${c.target} ${num(c.events, 0)} events for ${num(c.requests, 0)} requests (${num(c.missing, 0)} missing, ` +
            `${num(c.dropped, 0)} dropped: ${c.complete ? 'complete' : '**incomplete**'})`,
        )
        .join('; ')}.`,
    );
  }
  return out;
}

/** idle-100k: memory per idle flow at 100,000 flows, honeygate workers vs several HAProxy processes (target <= 2x). */
function idle100kSection(x) {
  const t = x.targets;
  const mib = (key) => (s) => {
    const r = s?.raw;
    if (!r?.length) return null;
    const v = r.map((y) => y[key] / 1024);
    return { best: Math.min(...v), median: v.sort((a, b) => a - b)[Math.floor(v.length / 2)] };
  };
  const runs = (name) =>
    (t[name]?.raw ?? [])
      .map(
        (y) =>
          `${num(y.flows, 0)} flows (${num(y.errors, 0)} errors${
            y.errors && y.why
              ? `: ${Object.entries(y.why)
                  .map(([k, v]) => `${k} ${v}`)
                  .join(', ')}`
              : ''
          }), ` +
          `${num(y.atNginx, 0)} open at nginx, ` +
          `${num(y.atProxy, 0)} at the proxy's port` +
          (y.workerFlows ? `, ${Math.min(...y.workerFlows)}-${Math.max(...y.workerFlows)} per worker` : '') +
          (y.recorded !== undefined
            ? `, ${num(y.recorded, 0)} of the ${num(y.flows + y.errors, 0)} flows recorded after the close`
            : ''),
      )
      .join('; ');
  const out = [
    '',
    `### Idle memory at ${num(x.flows, 0)} flows, ${x.processes} processes each (${x.layout})`,
    '',
  ];
  out.push(
    row([
      'figure',
      `HAProxy × ${x.processes}`,
      `honeygate workers: ${x.processes}`,
      'honeygate / HAProxy',
      'target',
    ]),
  );
  out.push(row(['---', '---:', '---:', '---:', '---:']));
  out.push(
    row([
      'memory per idle proxied flow, KiB (RSS delta of every process / flows)',
      cell(t.haproxy, 2),
      cell(t.honeygate, 2),
      ratio(t.honeygate, t.haproxy),
      '≤ 2',
    ]),
  );
  out.push(
    row([
      'RSS of all processes before the flows, MiB',
      cell(mib('beforeKiB')(t.haproxy), 0),
      cell(mib('beforeKiB')(t.honeygate), 0),
      '',
      '',
    ]),
  );
  out.push(
    row([
      'RSS of all processes with the flows open, MiB',
      cell(mib('afterKiB')(t.haproxy), 0),
      cell(mib('afterKiB')(t.honeygate), 0),
      '',
      '',
    ]),
  );
  out.push('');
  out.push(
    `${x.processes} HAProxy processes (nbthread 1, maxconn 9700 each) on one port through SO_REUSEPORT against ` +
      `honeygate \`workers: ${x.processes}\` (a primary and ${x.processes} workers, maxConnections 9700 each): one ` +
      'process may hold 20,000 open files and a proxied flow takes two. Both round robin over ' +
      `${x.nginxPorts} nginx ports (${x.nginxWorkers} workers, \`reuseport\`); ` +
      `the idle clients are ${x.clients} processes, each from its own 127.1.x.y address. RSS summed ` +
      'over every process of the proxy (honeygate: the primary and its workers, from /proc) once steady, before and ' +
      `after the flows (one keep-alive request each, then idle). HAProxy: ${runs('haproxy')}. honeygate: ${runs('honeygate')}. ` +
      `Load average ${x.load.before.map((v) => v.toFixed(2)).join(' ')} before, ${x.load.after.map((v) => v.toFixed(2)).join(' ')} after.`,
  );
  return out;
}

/** How busy each CPU was during each burst run: both near 100% means the machine is the bound. */
function busyNote(burst) {
  const runs = (t) =>
    (burst.targets[t]?.raw ?? [])
      .filter((x) => x.cpuBusy)
      .map((x) => Object.values(x.cpuBusy).join('/'))
      .join(', ');
  const cpus = Object.keys(burst.targets.haproxy?.raw?.[0]?.cpuBusy ?? {});
  if (!cpus.length) return '';
  return `CPUs busy during each run, % (CPU ${cpus.join('/')}): HAProxy ${runs('haproxy')}; honeygate ${runs('honeygate')}.`;
}

export function renderMarkdown(results) {
  const m = results.machine;
  const s = results.settings;
  const out = [];
  out.push(`## honeygate benchmark ${results.date}`);
  out.push('');
  out.push(
    `Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryMiB} MiB, ${m.os}, ${m.kernel}. ` +
      `honeygate ${m.honeygate} on Node ${m.node}; HAProxy ${m.haproxy}; nginx ${m.nginx}; wrk ${m.wrk}. ` +
      `Network: ${results.network}.`,
  );
  out.push('');
  out.push(
    `Each cell: best (median) of ${s.repeats} runs of ${s.seconds} s, targets in rotated order per repeat. ` +
      'Rates and MB/s: higher is better; CPU, latency, memory and time: lower is better. ' +
      'The ratio is honeygate / HAProxy, best (median).',
  );
  for (const layout of results.layouts) {
    out.push('');
    out.push(`### ${layout.label}`);
    out.push('');
    out.push(layoutTable(layout));
    if (layout.figures.connrate?.targets.relay) {
      out.push('');
      out.push(
        "Relay alone: `bench/relay-alone.mjs`, honeygate's native relay on its own (as many processes as " +
          'honeygate has workers), dialing every accepted ' +
          'connection at once: no admission, routing or event, no JS per flow but the dial call. ' +
          "The floor under honeygate's rate: what honeygate does per flow comes on top.",
      );
    }
  }
  out.push(...floorSection(results));
  const extra = [];
  if (results.idleMemory) {
    const t = results.idleMemory.targets;
    extra.push(
      row([
        `memory per idle proxied flow, KiB (${results.idleMemory.flows} flows, RSS delta / flows)`,
        cell(t.haproxy, 2),
        cell(t.honeygate, 2),
        ratio(t.honeygate, t.haproxy),
      ]),
    );
  }
  if (results.burst) {
    const t = results.burst.targets;
    extra.push(
      row([
        `burst: ${results.burst.ports} ports, one connection each, s until all accepted and recorded (bind listeners: non-transparent variant)`,
        cell(t.haproxy, 2),
        cell(t.honeygate, 2),
        ratio(t.honeygate, t.haproxy),
      ]),
    );
  }
  if (extra.length) {
    out.push('');
    out.push(`### Idle memory and burst (${results.idleMemory?.layout ?? results.burst?.layout})`);
    out.push('');
    out.push(row(['figure', 'HAProxy', 'honeygate', 'honeygate / HAProxy']));
    out.push(row(['---', '---:', '---:', '---:']));
    out.push(...extra);
    if (results.burst) {
      out.push('');
      out.push(
        'Burst "recorded": honeygate rows in SQLite; HAProxy `option tcplog` lines on stdout (it has no event store). ' +
          `The burst client opens ${results.burst.window} connections at a time. ${busyNote(results.burst)}`,
      );
    }
  }
  if (results.idle100k) out.push(...idle100kSection(results.idle100k));
  if (results.completeness.length) {
    out.push('');
    out.push('### Event completeness (honeygate, the connection-rate runs)');
    out.push('');
    out.push(
      row([
        'layout',
        'target',
        'conns/s',
        'wrk requests',
        'wrk socket errors',
        'events in SQLite',
        'missing',
        'dropped by queue',
        'complete',
      ]),
    );
    out.push(row(['---', '---', '---:', '---:', '---:', '---:', '---:', '---:', '---']));
    for (const c of results.completeness) {
      out.push(
        row([
          c.layout,
          c.target,
          num(c.rate, 0),
          num(c.requests, 0),
          num(c.errors, 0),
          num(c.events, 0),
          num(c.missing, 0),
          num(c.dropped, 0),
          c.complete ? 'yes' : '**no**',
        ]),
      );
    }
    out.push('');
    out.push(
      'Each run at the highest rate reached (the fastest honeygate run of each layout). "missing": completed ' +
        'requests without an event; events above the request count are connections wrk left open at the end of the run.',
    );
  }
  if (results.manySources) out.push(...manySourcesSection(results.manySources));
  if (results.transparent) out.push(...transparentSection(results.transparent));
  if (results.tunnel) out.push(...tunnelSection(results.tunnel));
  if (results.udp) out.push(...udpSection(results.udp));
  if (results.profile) {
    out.push('');
    out.push('### honeygate CPU profile (self time)');
    for (const p of results.profile) {
      out.push('');
      out.push(
        `${p.load}: ${num(p.rate, 0)}/s while profiled; ${num(p.totalMs - p.idleMs, 0)} ms busy of ${num(p.totalMs, 0)} ms sampled (self % of busy)`,
      );
      out.push('');
      out.push(row(['self %', 'function', 'where']));
      out.push(row(['---:', '---', '---']));
      for (const f of p.top) out.push(row([num(f.percent, 1), `\`${f.name}\``, f.where]));
    }
  }
  out.push('');
  out.push(`Run took ${num(results.elapsedSeconds / 60, 1)} min.`);
  return `${out.join('\n')}\n`;
}
