// The dashboard page: what is hitting us right now, from where, on which ports, and did the
// honeypots get it. Everything comes from the JSON API (api.ts); nothing from the internet.
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import type uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './app.css';
import {
  type Backends,
  type Ev,
  get,
  type Heatmap,
  type Overview,
  type Refusals,
  type SourceRow,
  type Timeline,
} from './api.js';
import { barChart, heatmapChart, timelineChart } from './charts.js';

type Range = '1h' | '24h' | '7d';
const RANGES: Range[] = ['1h', '24h', '7d'];
const REFRESH_MS = 10_000;
const LIVE_ROWS = 100;

/** A time in the viewer's zone, UTC on hover. */
function When({ ms, date = false }: { ms: number | null; date?: boolean }) {
  if (ms === null) return <span>-</span>;
  const d = new Date(ms);
  const sameDay = new Date().toDateString() === d.toDateString();
  const text = date || !sameDay ? d.toLocaleString() : d.toLocaleTimeString();
  return (
    <time dateTime={d.toISOString()} title={`${d.toISOString().replace('T', ' ').replace('Z', ' UTC')}`}>
      {text}
    </time>
  );
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = -1;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

function endpoint(a: { ip: string; port: number }): string {
  return a.ip.includes(':') ? `[${a.ip}]:${a.port}` : `${a.ip}:${a.port}`;
}

function useResize(): number {
  const [w, setW] = useState(window.innerWidth);
  useEffect(() => {
    let t: ReturnType<typeof setTimeout> | undefined;
    const on = () => {
      clearTimeout(t);
      t = setTimeout(() => setW(window.innerWidth), 150);
    };
    window.addEventListener('resize', on);
    return () => window.removeEventListener('resize', on);
  }, []);
  return w;
}

/** Loads `path` now, whenever `deps` change, and every REFRESH_MS. */
function usePoll<T>(path: string, deps: unknown[]): { data: T | null; error: string | null } {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let alive = true;
    const load = () =>
      get<T>(path).then(
        (d) => {
          if (!alive) return;
          setData(d);
          setError(null);
        },
        (e: Error) => {
          if (alive) setError(e.message);
        },
      );
    load();
    const t = setInterval(load, REFRESH_MS);
    return () => {
      alive = false;
      clearInterval(t);
    };
  }, deps);
  return { data, error };
}

function Card(props: {
  title: string;
  id: string;
  wide?: boolean;
  children: preact.ComponentChildren;
  error?: string | null;
}) {
  return (
    <section class={`card${props.wide ? ' wide' : ''}`} id={props.id} aria-labelledby={`${props.id}-h`}>
      <h2 id={`${props.id}-h`}>{props.title}</h2>
      {props.error ? <p class="error">{props.error}</p> : props.children}
    </section>
  );
}

function Empty({ what }: { what: string }) {
  return <p class="empty">No {what} in this range.</p>;
}

function TimelineCard({
  range,
  by,
  setBy,
  width,
}: {
  range: Range;
  by: string;
  setBy: (b: string) => void;
  width: number;
}) {
  const { data, error } = usePoll<Timeline>(`/api/stats/timeline?range=${range}&by=${by}`, [range, by]);
  const el = useRef<HTMLDivElement>(null);
  const chart = useRef<uPlot | null>(null);
  useEffect(() => {
    if (data && el.current) chart.current = timelineChart(el.current, data, chart.current);
  }, [data, width]);
  useEffect(() => () => chart.current?.destroy(), []);
  return (
    <Card title="Flows over time" id="timeline" wide error={error}>
      <div class="toolbar">
        <span>by</span>
        {['action', 'route'].map((b) => (
          <button type="button" class={b === by ? 'on' : ''} aria-pressed={b === by} onClick={() => setBy(b)}>
            {b}
          </button>
        ))}
      </div>
      <div ref={el} class="chart" data-chart="timeline" />
    </Card>
  );
}

function BarsCard(props: {
  title: string;
  id: string;
  items: { label: string; value: number }[] | null;
  error: string | null;
  color?: string;
  what: string;
  width: number;
  children?: preact.ComponentChildren;
}) {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    if (props.items?.length && canvas.current) barChart(canvas.current, props.items, props.color);
  }, [props.items, props.width]);
  return (
    <Card title={props.title} id={props.id} error={props.error}>
      {props.items && props.items.length === 0 ? <Empty what={props.what} /> : null}
      <canvas
        ref={canvas}
        data-chart={props.id}
        hidden={!props.items?.length}
        role="img"
        aria-label={props.title}
      />
      {props.children}
    </Card>
  );
}

function HeatmapCard({ range, width }: { range: Range; width: number }) {
  const { data, error } = usePoll<Heatmap>(`/api/stats/heatmap?range=${range}`, [range]);
  const canvas = useRef<HTMLCanvasElement>(null);
  const [tip, setTip] = useState<string | null>(null);
  const lookup = useRef<((x: number, y: number) => string | null) | null>(null);
  useEffect(() => {
    if (data?.ports.length && canvas.current) lookup.current = heatmapChart(canvas.current, data);
  }, [data, width]);
  const onMove = (e: MouseEvent) => {
    const r = (e.target as HTMLCanvasElement).getBoundingClientRect();
    setTip(lookup.current?.(e.clientX - r.left, e.clientY - r.top) ?? null);
  };
  return (
    <Card title={`Ports by ${range === '1h' ? '5 minutes' : 'hour'}`} id="heatmap" wide error={error}>
      {data && data.ports.length === 0 ? <Empty what="flows" /> : null}
      <canvas
        ref={canvas}
        data-chart="heatmap"
        hidden={!data?.ports.length}
        onMouseMove={onMove}
        onMouseLeave={() => setTip(null)}
        role="img"
        aria-label="flows per destination port and time"
      />
      <p class="tip">{tip ?? '\u00a0'}</p>
    </Card>
  );
}

function SourcesCard({ range, onSearch }: { range: Range; onSearch: (f: Filters) => void }) {
  const { data, error } = usePoll<{ sources: SourceRow[] }>(`/api/stats/sources?range=${range}`, [range]);
  return (
    <Card title="Top sources" id="sources" error={error}>
      {data && data.sources.length === 0 ? <Empty what="flows" /> : null}
      {data?.sources.length ? (
        <div class="scroll">
          <table>
            <thead>
              <tr>
                <th>source</th>
                <th class="num">flows</th>
                <th>first</th>
                <th>last</th>
                <th>ports</th>
                <th>protocols</th>
              </tr>
            </thead>
            <tbody>
              {data.sources.map((s) => (
                <tr>
                  <td>
                    <button
                      type="button"
                      class="link"
                      onClick={() => onSearch({ ...NO_FILTERS, src: s.ip, since: range })}
                    >
                      {s.ip}
                    </button>
                  </td>
                  <td class="num">{s.flows.toLocaleString()}</td>
                  <td>
                    <When ms={s.first} />
                  </td>
                  <td>
                    <When ms={s.last} />
                  </td>
                  <td class="ports">
                    {s.ports.join(' ')}
                    {s.portCount > s.ports.length ? ` +${s.portCount - s.ports.length}` : ''}
                  </td>
                  <td>{s.protocols.join(' ')}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </Card>
  );
}

function BackendsCard() {
  const { data, error } = usePoll<Backends>('/api/backends', []);
  return (
    <Card title="Backends" id="backends" error={error}>
      {data && data.backends.length === 0 ? <p class="empty">No backends configured.</p> : null}
      <ul class="backends">
        {data?.backends.map((b) => (
          <li>
            <strong>{b.backend}</strong>
            <ul>
              {b.servers.map((s) => (
                <li class={s.up ? 'up' : 'down'}>
                  <span class={`dot ${s.up ? 'up' : 'down'}`} aria-hidden="true" />
                  {s.server}{' '}
                  <span class="muted">
                    {s.up ? 'up' : 'down'}, {s.active} open
                  </span>
                </li>
              ))}
            </ul>
          </li>
        ))}
      </ul>
      {data ? (
        <p class="muted">
          {data.openFlows} open flows, {data.refused} refused since start, up{' '}
          {Math.round(data.uptimeSeconds / 60)} min
        </p>
      ) : null}
    </Card>
  );
}

function StatusCard({ overview, error }: { overview: Overview | null; error: string | null }) {
  return (
    <Card title="Sensors and firewall" id="sensors" error={error}>
      {overview?.sensors.length ? (
        <table>
          <thead>
            <tr>
              <th>sensor</th>
              <th class="num">flows</th>
              <th>last flow</th>
            </tr>
          </thead>
          <tbody>
            {overview.sensors.map((s) => (
              <tr>
                <td>{s.sensor}</td>
                <td class="num">{s.flows.toLocaleString()}</td>
                <td>
                  <When ms={s.last} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <Empty what="sensors" />
      )}
      <h3>Firewall</h3>
      {overview?.firewall.length ? (
        <ul class="plain">
          {overview.firewall.map((f) => (
            <li>
              <When ms={f.at} /> {f.sensor}: {f.detail ?? 'rules applied'}
            </li>
          ))}
        </ul>
      ) : (
        <p class="muted">
          No firewall events (rules managed by <code>run --manage-firewall</code> note each apply here; run{' '}
          <code>honeygate firewall doctor</code> for the full check).
        </p>
      )}
    </Card>
  );
}

interface Filters {
  since: string;
  until: string;
  src: string;
  dstPort: string;
  route: string;
  action: string;
  type: string;
  sensor: string;
  limit: string;
}
const NO_FILTERS: Filters = {
  since: '24h',
  until: '',
  src: '',
  dstPort: '',
  route: '',
  action: '',
  type: '',
  sensor: '',
  limit: '100',
};

function queryString(f: Filters): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(f)) if (v) p.set(k, v);
  return p.toString();
}

function EventsTable({
  events,
  onOpen,
  live = false,
}: {
  events: Ev[];
  onOpen: (id: string) => void;
  live?: boolean;
}) {
  return (
    <div class="scroll">
      <table class="events">
        <thead>
          <tr>
            <th>time</th>
            <th>source</th>
            <th>destination</th>
            <th>route</th>
            <th>action</th>
            <th class="hide-narrow">protocol</th>
            <th class="hide-narrow">end</th>
            <th class="num hide-narrow">bytes in</th>
          </tr>
        </thead>
        <tbody>
          {events.map((e) => (
            <tr key={`${e.id}-${e.type}-${e.openedAt}`} class={`${live ? 'fresh ' : ''}t-${e.type}`}>
              <td>
                <When ms={e.openedAt} />
              </td>
              <td>
                <button type="button" class="link" onClick={() => onOpen(e.id)} title="show this flow">
                  {e.type === 'rejected' ? `${e.src.ip} ×${e.count}` : endpoint(e.src)}
                </button>
              </td>
              <td>{e.dst.ip ? endpoint(e.dst) : '-'}</td>
              <td>{e.route ?? '-'}</td>
              <td>{e.type === 'flow' ? (e.action ?? '-') : e.type}</td>
              <td class="hide-narrow">{e.protocol ?? ''}</td>
              <td class="hide-narrow">{e.closeReason ?? ''}</td>
              <td class="num hide-narrow">{e.type === 'rejected' ? '' : e.bytesIn.toLocaleString()}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function LiveCard({ onOpen }: { onOpen: (id: string) => void }) {
  const [events, setEvents] = useState<Ev[]>([]);
  const [state, setState] = useState<'connecting' | 'live' | 'lost'>('connecting');
  useEffect(() => {
    const es = new EventSource('/api/live?backlog=30');
    es.onopen = () => setState('live');
    es.onerror = () => setState(es.readyState === EventSource.CLOSED ? 'lost' : 'connecting');
    es.addEventListener('events', (m) => {
      const fresh = (JSON.parse((m as MessageEvent<string>).data) as Ev[]).filter((e) => e.type !== 'update');
      setState('live');
      if (fresh.length) setEvents((old) => [...fresh.reverse(), ...old].slice(0, LIVE_ROWS));
    });
    return () => es.close();
  }, []);
  return (
    <Card title="Live feed" id="live" wide>
      <p class={`live-state ${state}`} role="status">
        <span class={`dot ${state}`} aria-hidden="true" /> {state}
      </p>
      {events.length === 0 ? (
        <p class="empty">Waiting for connections…</p>
      ) : (
        <EventsTable events={events} onOpen={onOpen} live />
      )}
    </Card>
  );
}

function SearchCard({
  filters,
  setFilters,
  onOpen,
}: {
  filters: Filters;
  setFilters: (f: Filters) => void;
  onOpen: (id: string) => void;
}) {
  const [draft, setDraft] = useState(filters);
  const [result, setResult] = useState<Ev[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    setDraft(filters);
    get<{ events: Ev[] }>(`/api/events?${queryString(filters)}`).then(
      (r) => {
        setResult(r.events);
        setError(null);
      },
      (e: Error) => {
        setResult(null);
        setError(e.message);
      },
    );
  }, [filters]);
  const field = (name: keyof Filters, label: string, placeholder: string) => (
    <label>
      {label}
      <input
        name={name}
        value={draft[name]}
        placeholder={placeholder}
        onInput={(e) => setDraft({ ...draft, [name]: (e.target as HTMLInputElement).value })}
      />
    </label>
  );
  const select = (name: keyof Filters, label: string, options: string[]) => (
    <label>
      {label}
      <select
        name={name}
        value={draft[name]}
        onChange={(e) => setDraft({ ...draft, [name]: (e.target as HTMLSelectElement).value })}
      >
        <option value="">any</option>
        {options.map((o) => (
          <option value={o}>{o}</option>
        ))}
      </select>
    </label>
  );
  const qs = queryString(filters);
  return (
    <Card title="Search" id="search" wide>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          setFilters({ ...draft });
        }}
      >
        {field('since', 'since', '15m, 2h, 7d or ISO')}
        {field('until', 'until', 'ISO time')}
        {field('src', 'source', 'IP or CIDR')}
        {field('dstPort', 'port', '22, 8000-8099')}
        {field('route', 'route', 'name')}
        {select('action', 'action', ['forward', 'capture', 'reject', 'drop', 'close'])}
        {select('type', 'type', ['flow', 'update', 'rejected', 'firewall', 'egress'])}
        {field('sensor', 'sensor', 'name')}
        {field('limit', 'limit', '100')}
        <div class="buttons">
          <button type="submit">Search</button>
          <button type="button" onClick={() => setFilters({ ...NO_FILTERS })}>
            Reset
          </button>
        </div>
      </form>
      {error ? <p class="error">{error}</p> : null}
      {result ? (
        <>
          <p class="muted result-count">
            {result.length} events{' '}
            <a href={`/api/events?${qs}&format=jsonl`} download id="export-jsonl">
              export JSON lines
            </a>{' '}
            <a href={`/api/events?${qs}&format=csv`} download id="export-csv">
              export CSV
            </a>
          </p>
          {result.length ? <EventsTable events={result} onOpen={onOpen} /> : null}
        </>
      ) : null}
    </Card>
  );
}

function hexDump(hex: string): string {
  const lines: string[] = [];
  for (let off = 0; off < hex.length; off += 32) {
    const chunk = hex.slice(off, off + 32);
    const pairs = chunk.match(/../g) ?? [];
    const ascii = pairs.map((p) => {
      const c = Number.parseInt(p, 16);
      return c >= 0x20 && c <= 0x7e ? String.fromCharCode(c) : '.';
    });
    lines.push(
      `${(off / 2).toString(16).padStart(6, '0')}  ${pairs.join(' ').padEnd(47)}  ${ascii.join('')}`,
    );
  }
  return lines.join('\n');
}

function Detail({ id, onClose }: { id: string; onClose: () => void }) {
  const [events, setEvents] = useState<Ev[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    get<{ events: Ev[] }>(`/api/events/${id}`).then(
      (r) => setEvents(r.events),
      (e: Error) => setError(e.message),
    );
    const esc = (e: KeyboardEvent) => e.key === 'Escape' && onClose();
    window.addEventListener('keydown', esc);
    return () => window.removeEventListener('keydown', esc);
  }, [id]);
  const e = events?.find((x) => x.type !== 'update') ?? events?.at(-1);
  const rows: [string, preact.ComponentChildren][] = e
    ? [
        ['id', <code>{e.id}</code>],
        ['type', e.type],
        ['opened', <When ms={e.openedAt} date />],
        ['closed', <When ms={e.closedAt} date />],
        ['duration', `${(e.durationMs / 1000).toFixed(3)} s`],
        ['sensor', e.sensor],
        ['listener', e.listener],
        ['source', e.src.ip ? endpoint(e.src) : '-'],
        ['destination', e.dst.ip ? endpoint(e.dst) : '-'],
        ['proxy peer', e.peer ? `${endpoint(e.peer)} (PROXY ${e.proxyHeader})` : '-'],
        ['route', e.route ?? '-'],
        ['action', e.action ?? '-'],
        [
          'backend',
          e.backend ? `${e.backend}${e.server ? ` → ${e.server}` : ''} (${e.sourceMode ?? 'none'})` : '-',
        ],
        ['bytes', `${bytes(e.bytesIn)} in, ${bytes(e.bytesOut)} out`],
        ['close reason', e.closeReason ?? '-'],
        ['count', String(e.count)],
        ['protocol', e.protocol ?? '-'],
        ['detail', e.detail ?? '-'],
      ]
    : [];
  return (
    <div class="overlay">
      <button type="button" class="backdrop" aria-label="close" tabIndex={-1} onClick={onClose} />
      <section class="detail" role="dialog" aria-modal="true" aria-labelledby="detail-h" id="detail">
        <header>
          <h2 id="detail-h">Flow {id.slice(0, 12)}…</h2>
          <button type="button" onClick={onClose} aria-label="close">
            ×
          </button>
        </header>
        {error ? <p class="error">{error}</p> : null}
        {e ? (
          <>
            <dl>
              {rows.map(([k, v]) => (
                <>
                  <dt>{k}</dt>
                  <dd>{v}</dd>
                </>
              ))}
            </dl>
            {e.protocolFields ? (
              <>
                <h3>Protocol fields</h3>
                <pre class="fields">{JSON.stringify(e.protocolFields, null, 2)}</pre>
              </>
            ) : null}
            <h3>First bytes ({(e.firstBytesHex?.length ?? 0) / 2} bytes)</h3>
            <h4>text</h4>
            <pre class="bytes" id="first-text">
              {e.firstBytesText || '(none)'}
            </pre>
            <h4>hex</h4>
            <pre class="bytes" id="first-hex">
              {e.firstBytesHex ? hexDump(e.firstBytesHex) : '(none)'}
            </pre>
            {events && events.length > 1 ? (
              <p class="muted">
                {events.length - 1} update{events.length > 2 ? 's' : ''} recorded while the flow was open.
              </p>
            ) : null}
          </>
        ) : null}
      </section>
    </div>
  );
}

function App() {
  const width = useResize();
  const [range, setRange] = useState<Range>('24h');
  const [by, setBy] = useState('action');
  const [filters, setFilters] = useState<Filters>(NO_FILTERS);
  const [open, setOpen] = useState<string | null>(null);
  const overview = usePoll<Overview>(`/api/stats/overview?range=${range}`, [range]);
  const ports = usePoll<{ ports: { port: number; flows: number }[] }>(`/api/stats/ports?range=${range}`, [
    range,
  ]);
  const protocols = usePoll<{ protocols: { protocol: string; flows: number }[] }>(
    `/api/stats/protocols?range=${range}`,
    [range],
  );
  const refusals = usePoll<Refusals>(`/api/stats/refusals?range=${range}`, [range]);
  const search = (f: Filters) => {
    setFilters(f);
    document.getElementById('search')?.scrollIntoView({ behavior: 'smooth' });
  };
  const o = overview.data;
  const refusalItems = refusals.data
    ? [
        ...refusals.data.byReason.map((r) => ({ label: r.reason, value: r.flows })),
        ...refusals.data.limitEnds.map((r) => ({ label: r.reason, value: r.flows })),
      ]
    : null;
  return (
    <>
      <header class="top">
        <h1>honeygate</h1>
        <nav class="ranges" aria-label="time range">
          {RANGES.map((r) => (
            <button
              type="button"
              class={r === range ? 'on' : ''}
              aria-pressed={r === range}
              onClick={() => setRange(r)}
            >
              {r}
            </button>
          ))}
        </nav>
        <form method="post" action="/logout" class="logout">
          <button type="submit">Log out</button>
        </form>
      </header>
      <main>
        <section class="tiles" aria-label="totals">
          <div class="tile" id="tile-flows">
            <span class="n">{o ? o.flows.toLocaleString() : '…'}</span> flows
          </div>
          <div
            class="tile"
            id="tile-sources"
            title={
              o?.sourcesEstimated ? 'an estimate: within about 3% (2 standard errors of 1.6%)' : undefined
            }
          >
            <span class="n">{o ? `${o.sourcesEstimated ? '~' : ''}${o.sources.toLocaleString()}` : '…'}</span>{' '}
            sources
          </div>
          <div class="tile bad">
            <span class="n">{o ? o.refused.toLocaleString() : '…'}</span> refused
          </div>
          <div class="tile">
            <span class="n">{o ? bytes(o.bytesIn) : '…'}</span> received
          </div>
        </section>
        <div class="grid">
          <TimelineCard range={range} by={by} setBy={setBy} width={width} />
          <LiveCard onOpen={setOpen} />
          <SourcesCard range={range} onSearch={search} />
          <BarsCard
            title="Top destination ports"
            id="ports"
            what="flows"
            width={width}
            error={ports.error}
            items={ports.data?.ports.map((p) => ({ label: String(p.port), value: p.flows })) ?? null}
          />
          <HeatmapCard range={range} width={width} />
          <BarsCard
            title="Protocol mix"
            id="protocols"
            what="flows"
            width={width}
            color="--c2"
            error={protocols.error}
            items={protocols.data?.protocols.map((p) => ({ label: p.protocol, value: p.flows })) ?? null}
          />
          <BarsCard
            title="Refusals and limit hits"
            id="refusals"
            what="refusals or limit hits"
            width={width}
            color="--bad"
            error={refusals.error}
            items={refusalItems}
          >
            {refusals.data?.topSources.length ? (
              <p class="muted">
                most refused:{' '}
                {refusals.data.topSources
                  .slice(0, 5)
                  .map((s) => `${s.ip} (${s.flows})`)
                  .join(', ')}
              </p>
            ) : null}
          </BarsCard>
          <BackendsCard />
          <StatusCard overview={o} error={overview.error} />
          <SearchCard filters={filters} setFilters={setFilters} onOpen={setOpen} />
        </div>
      </main>
      {open ? <Detail id={open} onClose={() => setOpen(null)} /> : null}
    </>
  );
}

const root = document.getElementById('app')!;
root.textContent = ''; // the "Loading…" placeholder: render() adds to what is there
render(<App />, root);
