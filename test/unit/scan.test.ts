// The port set codec (ranges text <-> set, list -> bitmap) and the scan detector fed events
// as the recorder would: flows and rejected tallies of one source become one scan event.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ScanConfig } from '../../src/config/types.js';
import { blankEvent, type FlowEvent } from '../../src/events/event.js';
import { Admission } from '../../src/gateway/admit.js';
import { ScanDetector } from '../../src/scan/detector.js';
import { AddressSet, PortSet } from '../../src/scan/portset.js';

describe('PortSet', () => {
  const cases: [number[], string][] = [
    [[], ''],
    [[22], '22'],
    [[0, 65535], '0,65535'],
    [[80, 22, 23, 24, 443], '22-24,80,443'],
    [[8000, 8001, 8002, 9000, 9002], '8000-8002,9000,9002'],
  ];
  for (const [ports, text] of cases) {
    it(`writes ${JSON.stringify(ports)} as "${text}" and reads it back`, () => {
      const set = new PortSet();
      for (const p of ports) set.add(p);
      assert.equal(set.toString(), text);
      assert.equal(set.size, new Set(ports).size);
      assert.deepEqual(
        PortSet.parse(text).ports(),
        [...new Set(ports)].sort((a, b) => a - b),
      );
    });
  }

  it('holds all 65,536 ports (the bitmap) and writes them as one range', () => {
    const set = new PortSet();
    for (let p = 65535; p >= 0; p--) set.add(p);
    assert.equal(set.size, 65536);
    assert.equal(set.toString(), '0-65535');
    assert.equal(PortSet.parse('0-65535').size, 65536);
  });

  it('keeps a set exact across the switch from list to bitmap', () => {
    const set = new PortSet();
    const want: number[] = [];
    for (let p = 1; p < 3000; p += 7) {
      assert.equal(set.add(p), true);
      assert.equal(set.add(p), false, 'a port added twice counts once');
      want.push(p);
    }
    assert.deepEqual(set.ports(), want);
    assert.equal(PortSet.parse(set.toString()).toString(), set.toString());
    assert.ok(set.has(8) && !set.has(9));
  });

  it('ignores what is not a port', () => {
    const set = new PortSet();
    for (const p of [-1, 65536, 1.5, Number.NaN]) assert.equal(set.add(p), false);
    assert.equal(set.size, 0);
  });

  it('reads spaces, any order and overlaps; refuses anything else naming the part', () => {
    assert.equal(PortSet.parse(' 80 , 20-25, 22-30 ').toString(), '20-30,80');
    for (const bad of ['x', '1-', '5-1', '70000', '1,,2', '-3', '1-2-3']) {
      assert.throws(() => PortSet.parse(bad), /invalid port range/, bad);
    }
  });
});

describe('AddressSet', () => {
  it('lists the first max addresses and estimates the count past them', () => {
    const set = new AddressSet(4);
    for (let i = 0; i < 2000; i++) set.add(`192.0.2.${i % 256}.${i >> 8}`);
    set.add('192.0.2.0.0');
    assert.equal(set.list().length, 4);
    assert.ok(set.truncated);
    assert.ok(Math.abs(set.count - 2000) < 100, `estimate ${set.count} of 2000`);
  });
});

const CONFIG: ScanConfig = {
  enabled: true,
  ports: 10,
  addresses: 10,
  idleMs: 30_000,
  maxDurationMs: 600_000,
  maxAddresses: 256,
  maxSources: 100,
};

let n = 0;
const newId = () => (n++).toString(16).padStart(32, '0');

function flow(src: string, dst: string, port: number, fields: Partial<FlowEvent> = {}): FlowEvent {
  return blankEvent({
    id: newId(),
    type: 'flow',
    openedAt: 1_000 + port,
    closedAt: 1_000 + port,
    sensor: 's',
    listener: 'all',
    src: { ip: src, port: 40000 },
    dst: { ip: dst, port },
    closeReason: 'client-reset',
    ...fields,
  });
}

describe('ScanDetector', () => {
  it('joins admitted flows and a rejected tally of one source into one scan event', () => {
    const d = new ScanDetector(CONFIG);
    for (let p = 1; p <= 5; p++) d.observe(flow('198.51.100.1', '192.0.2.1', p), 0);
    d.observe(flow('198.51.100.1', '192.0.2.1', 6, { bytesIn: 10 }), 0);
    const adm = new Admission({ perSourceRate: { count: 1, perMs: 1000 } } as never);
    for (let p = 7; p <= 40; p++)
      adm.refused('198.51.100.1', 'limit-rate', 'all', { ip: '192.0.2.1', port: p });
    const [tally] = adm.drain('s', newId);
    assert.equal(tally!.targets!.ports, '7-40');
    assert.equal(tally!.targets!.portCount, 34);
    assert.deepEqual(tally!.targets!.addresses, ['192.0.2.1']);
    d.observe(tally!, 0);
    // a quiet source that touched a few ports is no scan
    for (let p = 1; p <= 3; p++) d.observe(flow('198.51.100.2', '192.0.2.1', p), 0);

    assert.deepEqual(d.sweep(newId, 29_999), [], 'nothing before the source is idle');
    const scans = d.sweep(newId, 30_000);
    assert.equal(scans.length, 1);
    const s = scans[0]!;
    assert.equal(s.type, 'scan');
    assert.equal(s.src.ip, '198.51.100.1');
    assert.equal(s.targets!.ports, '1-40');
    assert.equal(s.targets!.portCount, 40);
    assert.equal(s.count, 40);
    assert.deepEqual(s.scan!.techniques, { 'connect-reset': 5, probe: 1, refused: 34 });
    assert.equal(s.scan!.refused, 34);
    assert.equal(d.stats().tracked, 0, 'both tracks ended');
  });

  it('reports a sweep of many addresses on one port, with the address list bounded', () => {
    const d = new ScanDetector({ ...CONFIG, maxAddresses: 8 });
    for (let i = 1; i <= 50; i++) d.observe(flow('198.51.100.3', `192.0.2.${i}`, 23), 0);
    const [s] = d.sweep(newId, 0, true);
    assert.equal(s!.targets!.ports, '23');
    assert.equal(s!.targets!.addresses.length, 8);
    assert.ok(
      s!.targets!.addressCount >= 48 && s!.targets!.addressCount <= 52,
      `${s!.targets!.addressCount}`,
    );
  });

  it('cuts a scan longer than maxDuration into parts, and tracks at most maxSources', () => {
    const d = new ScanDetector({ ...CONFIG, maxSources: 1 });
    for (let p = 1; p <= 20; p++) d.observe(flow('198.51.100.4', '192.0.2.1', p), 0);
    d.observe(flow('198.51.100.5', '192.0.2.1', 1), 0);
    assert.deepEqual(d.stats(), { tracked: 1, untracked: 1, scans: 0 });
    for (let p = 21; p <= 40; p++) d.observe(flow('198.51.100.4', '192.0.2.1', p), 500_000);
    const [first] = d.sweep(newId, 600_000);
    assert.equal(first!.targets!.ports, '1-40');
    for (let p = 41; p <= 60; p++) d.observe(flow('198.51.100.4', '192.0.2.1', p), 600_001);
    const [second] = d.sweep(newId, 700_000);
    assert.equal(second!.targets!.ports, '41-60', 'the next part starts afresh');
  });

  it('tracks flows without a source as one unknown source, ignores the tallies overflow', () => {
    const d = new ScanDetector(CONFIG);
    for (let p = 1; p <= 20; p++) d.observe(flow('', '192.0.2.1', p), 0);
    for (let p = 1; p <= 20; p++) d.observe(flow('*', '192.0.2.1', p), 0);
    assert.equal(d.stats().tracked, 1);
    const [s] = d.sweep(newId, 0, true);
    assert.equal(s!.src.ip, '');
    assert.equal(s!.targets!.ports, '1-20');
    assert.match(s!.detail!, /^source unknown/);
  });

  it('does nothing when disabled', () => {
    const off = new ScanDetector({ ...CONFIG, enabled: false });
    for (let p = 1; p <= 20; p++) off.observe(flow('198.51.100.6', '192.0.2.1', p), 0);
    assert.deepEqual(off.sweep(newId, 0, true), []);
  });
});
