// The refusals of kernel routes: a flow over limits.perSource or limits.perSourceRate is reset
// by the kernel chain (render.ts) and counted in a dynamic set, one counter per source .
// destination . port (kernel_refused_{source,rate}_v{4,6}). Once per limits.rejectLogInterval
// this reads the sets (`nft -j list set`), hands what each counter grew by since the last read
// to the same Admission user space tallies its refusals in, and records its `rejected` events.
//
// Exact while the sets have room: an element lives an hour past its last refusal, far longer
// than the interval between reads, so every increment is read before its element goes. A set
// holds REFUSED_SET_SIZE keys; past that the kernel still resets the flows but cannot count
// them (docs/kernel.md).
import type { Config } from '../config/types.js';
import type { Address } from '../events/event.js';
import { newEventId, type Recorder } from '../events/recorder.js';
import { runTool } from '../firewall/apply.js';
import { parseNftJson } from '../firewall/nft-json.js';
import { FAMILY, TABLE } from '../firewall/render.js';
import { Admission } from '../gateway/admit.js';
import type { Logger } from '../log.js';
import { divertedTo, kernelRoutes } from './plan.js';
import { type KernelRefusal, refusedSet } from './render.js';

/** One element of a refusal set: who was refused, where, how many times so far. */
export interface RefusedElement {
  src: string;
  dst: Address;
  packets: number;
}

/** The elements of `nft -j list set` output (a refusal set); [] when it holds none or is not JSON. */
export function refusedElements(json: string): RefusedElement[] {
  const out: RefusedElement[] = [];
  for (const set of parseNftJson(json)?.sets ?? []) {
    for (const raw of set.elem) {
      const e = (raw as { elem?: { val?: { concat?: unknown[] }; counter?: { packets?: number } } }).elem;
      const [src, dip, port] = e?.val?.concat ?? [];
      const packets = e?.counter?.packets;
      if (typeof src !== 'string' || typeof dip !== 'string' || typeof port !== 'number') continue;
      if (typeof packets !== 'number') continue;
      out.push({ src, dst: { ip: dip, port }, packets });
    }
  }
  return out;
}

/** The handle of honeygate's table in `nft -j list tables` output, or null. */
export function tableHandle(json: string): number | null {
  try {
    const items = (JSON.parse(json) as { nftables?: unknown[] }).nftables ?? [];
    for (const item of items) {
      const t = (item as { table?: { family?: string; name?: string; handle?: number } }).table;
      if (t?.family === FAMILY && t.name === TABLE && typeof t.handle === 'number') return t.handle;
    }
  } catch {}
  return null;
}

export const KERNEL_REFUSALS: readonly KernelRefusal[] = ['limit-per-source', 'limit-rate'];

const totals: Record<KernelRefusal, number> = { 'limit-per-source': 0, 'limit-rate': 0 };

/** Kernel refusals read so far by every KernelRefusals of this process, by reason (for /metrics). */
export function kernelRefusedTotals(): Readonly<Record<KernelRefusal, number>> {
  return totals;
}

/** Runs `nft ARGS` (runTool's shape): tests hand in a fake. */
export type NftRunner = (args: string[]) => Promise<{ code: number | null; stdout: string }>;

const runNft: NftRunner = (args) => runTool('nft', args);

export class KernelRefusals {
  private readonly admission: Admission;
  private readonly seen = new Map<string, number>(); // set name + element -> packets read so far
  private timer: NodeJS.Timeout | null = null;
  private table: number | null = null; // the handle of the table whose sets `seen` counts
  private reading: Promise<void> | null = null;
  private warned = false;

  constructor(
    private config: Config,
    private readonly log: Logger,
    private readonly recorder: Recorder,
    private readonly nft: NftRunner = runNft,
  ) {
    this.admission = new Admission(config.limits);
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.read(), this.config.limits.rejectLogIntervalMs);
    this.timer.unref();
  }

  reload(config: Config): void {
    this.config = config;
    this.admission.setLimits(config.limits);
  }

  /** Reads the counters once more and records what they hold (call while the table exists). */
  async settle(): Promise<void> {
    await this.read();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.read();
  }

  /** One read of every refusal set, then the interval's `rejected` events. */
  read(): Promise<void> {
    this.reading ??= this.readSets().finally(() => {
      this.reading = null;
    });
    return this.reading;
  }

  private async readSets(): Promise<void> {
    // A table applied again (a reload, --manage-firewall's repair) has new sets, counting from
    // zero: what was read of the old ones no longer applies. Table handles only grow.
    const tables = await this.nft(['-j', 'list', 'tables']).catch(() => null);
    const handle = tables?.code === 0 ? tableHandle(tables.stdout) : null;
    if (handle === null) return; // not applied (yet): nothing refused
    if (handle !== this.table) this.seen.clear();
    this.table = handle;
    const listeners = kernelRoutes(this.config).flatMap((k) => k.listeners);
    const present = new Set<string>();
    const read = new Set<string>(); // the sets this read saw: only their vanished elements are forgotten
    for (const family of [4, 6] as const) {
      for (const reason of KERNEL_REFUSALS) {
        const set = refusedSet(reason, family);
        let stdout: string;
        try {
          const r = await this.nft(['-j', 'list', 'set', FAMILY, TABLE, set]);
          if (r.code !== 0) continue; // not applied (yet), or no such family: nothing refused there
          stdout = r.stdout;
          read.add(set);
        } catch (err) {
          if (!this.warned) this.log.warn({ code: 'HG_ERR_FIREWALL', err }, 'cannot read kernel refusals');
          this.warned = true;
          return;
        }
        for (const e of refusedElements(stdout)) {
          const key = `${set} ${e.src} ${e.dst.ip} ${e.dst.port}`;
          present.add(key);
          const before = this.seen.get(key) ?? 0;
          // fewer than before: the element expired and came back, counting from zero
          const n = e.packets >= before ? e.packets - before : e.packets;
          this.seen.set(key, e.packets);
          if (n <= 0) continue;
          totals[reason] += n;
          const listener = divertedTo(listeners, { host: e.dst.ip, port: e.dst.port })?.name ?? '';
          this.admission.refused(e.src, reason, listener, e.dst, n);
        }
      }
    }
    for (const key of this.seen.keys()) {
      if (!present.has(key) && read.has(key.slice(0, key.indexOf(' ')))) this.seen.delete(key);
    }
    for (const e of this.admission.drain(this.config.events.sensor, newEventId)) {
      this.recorder.record({ ...e, engine: 'kernel', detail: `${e.detail}, by the kernel (nftables)` });
    }
  }
}
