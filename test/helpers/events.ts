// A complete FlowEvent for the events tests (and the admin API's), every field set to something
// checkable, and a temporary directory.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FlowEvent } from '../../src/events/event.js';

let n = 0;

export function sampleEvent(over: Partial<FlowEvent> = {}): FlowEvent {
  n++;
  return {
    id: n.toString(16).padStart(32, '0'),
    type: 'flow',
    openedAt: Date.UTC(2024, 4, 1, 12, 0, 0, 250),
    closedAt: Date.UTC(2024, 4, 1, 12, 0, 1, 750),
    sensor: 'gw-test',
    listener: 'all-ports',
    src: { ip: '198.51.100.7', port: 40001 },
    dst: { ip: '192.0.2.1', port: 22 },
    peer: null,
    proxyHeader: null,
    route: 'ssh',
    action: 'forward',
    backend: 'cowrie',
    server: '192.0.2.10:2222',
    sourceMode: 'transparent',
    bytesIn: 123,
    bytesOut: 4567,
    durationMs: 1500,
    closeReason: 'client-closed',
    firstBytes: Buffer.from('SSH-2.0-Go\r\n'),
    protocol: 'ssh',
    protocolFields: { clientVersion: 'SSH-2.0-Go' },
    count: 1,
    detail: null,
    ...over,
  };
}

/** A fresh temporary directory and a function that removes it. */
export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'honeygate-events-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
