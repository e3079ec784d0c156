// Scan detection. Fed every event on its way to the sinks (Recorder.record): flow events for
// admitted flows and the `rejected` tallies for refused ones, so a scan is seen whichever
// way its flows went. Per source it keeps the ports (PortSet) and addresses (AddressSet)
// touched since the source's first flow; the source's track ends when it has been quiet
// for events.scan.idle, or has lasted events.scan.maxDuration, and if by then it touched
// more than events.scan.ports ports or events.scan.addresses addresses it becomes one
// `scan` event. So a source gets at most one scan event per maxDuration of activity, each
// bounded in size (the port set as ranges, at most maxAddresses addresses).
//
// With workers, the detector runs in the primary, whose recorder receives every worker's
// events: a scan whose flows SO_REUSEPORT spread over the workers is still one scan.
import type { ScanConfig } from '../config/types.js';
import { blankEvent, type FlowEvent, type ScanTechnique } from '../events/event.js';
import { AddressSet, PortSet } from './portset.js';

interface Track {
  ip: string;
  sensor: string;
  listener: string;
  first: number; // the first flow's opening, epoch ms
  last: number; // the last flow's opening or end
  seenAt: number; // when the last event of this source arrived here (wall clock)
  startedAt: number; // when the track began here (wall clock)
  ports: PortSet;
  addresses: AddressSet;
  flows: number;
  refused: number;
  techniques: Partial<Record<ScanTechnique, number>>;
}

export interface ScanStats {
  tracked: number; // sources tracked now
  untracked: number; // events of new sources not tracked because maxSources were (since start)
  scans: number; // scan events produced (since start)
}

export class ScanDetector {
  private readonly tracks = new Map<string, Track>();
  private untracked = 0;
  private scans = 0;

  constructor(private readonly config: ScanConfig) {}

  /** Counts one event. Never throws: it runs on the data path (Recorder.record). */
  observe(e: FlowEvent, now = Date.now()): void {
    if (!this.config.enabled) return;
    if (e.type !== 'flow' && e.type !== 'rejected') return;
    // '*': the tallies' overflow (many sources). '': flows reset before Node's accept() could
    // learn the source (nmap -sT without the native relay): tracked together as one unknown
    // source, so their ports are still seen as a scan.
    const ip = e.src?.ip ?? '';
    if (ip === '*') return;
    let t = this.tracks.get(ip);
    if (!t) {
      if (this.tracks.size >= this.config.maxSources) {
        this.untracked++;
        return;
      }
      t = {
        ip,
        sensor: e.sensor,
        listener: e.listener,
        first: e.openedAt,
        last: e.openedAt,
        seenAt: now,
        startedAt: now,
        ports: new PortSet(),
        addresses: new AddressSet(this.config.maxAddresses),
        flows: 0,
        refused: 0,
        techniques: {},
      };
      this.tracks.set(ip, t);
    }
    t.seenAt = now;
    t.first = Math.min(t.first, e.openedAt);
    if (e.type === 'rejected') {
      const n = e.count > 0 ? e.count : 1;
      t.flows += n;
      t.refused += n;
      t.techniques.refused = (t.techniques.refused ?? 0) + n;
      const targets = e.targets;
      if (targets) {
        try {
          t.ports.addAll(PortSet.parse(targets.ports));
        } catch {
          // a malformed tally from an old worker: its ports are unknown, its count still counts
        }
        for (const a of targets.addresses) t.addresses.add(a);
        t.last = Math.max(t.last, targets.lastAt);
      } else {
        t.ports.add(e.dst.port);
        t.addresses.add(e.dst.ip);
        t.last = Math.max(t.last, e.closedAt ?? e.openedAt);
      }
      return;
    }
    t.flows++;
    t.ports.add(e.dst.port);
    if (e.dst.ip) t.addresses.add(e.dst.ip);
    t.last = Math.max(t.last, e.openedAt);
    const technique = techniqueOf(e);
    t.techniques[technique] = (t.techniques[technique] ?? 0) + 1;
  }

  /**
   * Ends the tracks that are quiet for idleMs or older than maxDurationMs (all of them with
   * `all`): the scans among them become events, the rest are forgotten.
   */
  sweep(newId: () => string, now = Date.now(), all = false): FlowEvent[] {
    const out: FlowEvent[] = [];
    const { idleMs, maxDurationMs } = this.config;
    for (const [ip, t] of this.tracks) {
      if (!all && now - t.seenAt < idleMs && now - t.startedAt < maxDurationMs) continue;
      this.tracks.delete(ip);
      if (this.isScan(t)) out.push(this.event(t, newId()));
    }
    this.scans += out.length;
    return out;
  }

  stats(): ScanStats {
    return { tracked: this.tracks.size, untracked: this.untracked, scans: this.scans };
  }

  private isScan(t: Track): boolean {
    return t.ports.size > this.config.ports || t.addresses.count > this.config.addresses;
  }

  private event(t: Track, id: string): FlowEvent {
    const seconds = Math.max(0.001, (t.last - t.first) / 1000);
    const rate = Math.round((t.flows / seconds) * 10) / 10;
    const addresses = t.addresses.list();
    const addressCount = t.addresses.count;
    const how = Object.entries(t.techniques)
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k} ${n}`)
      .join(', ');
    return blankEvent({
      id,
      type: 'scan',
      openedAt: t.first,
      closedAt: t.last,
      sensor: t.sensor,
      listener: t.listener,
      src: { ip: t.ip, port: 0 },
      dst: { ip: addressCount === 1 ? (addresses[0] ?? '') : '', port: 0 },
      count: t.flows,
      targets: {
        ports: t.ports.toString(),
        portCount: t.ports.size,
        addresses,
        addressCount,
        lastAt: t.last,
      },
      scan: { flows: t.flows, refused: t.refused, rate, techniques: t.techniques },
      detail:
        (t.ip === '' ? 'source unknown (reset before accept, so no address): ' : '') +
        `scan of ${t.ports.size} ports on ${addressCount} address${addressCount === 1 ? '' : 'es'}: ` +
        `${t.flows} flows, ${rate}/s (${how})`,
    });
  }
}

/** What the source did on one admitted flow, as far as user space can tell. */
export function techniqueOf(e: FlowEvent): ScanTechnique {
  if (e.bytesIn > 0) return 'probe';
  if (e.closeReason === 'client-reset') return 'connect-reset';
  if (e.closeReason === 'client-closed' || e.closeReason === 'capture-done') return 'connect-close';
  return 'connect-idle';
}
