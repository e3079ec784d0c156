// The event of one proxied HTTP flow, as the gateway records it: what the store benchmarks
// (store-row-cost.mjs, store-thread-cost.mjs) write.
import { blankEvent } from '../../dist/src/events/event.js';
import { newEventId } from '../../dist/src/events/recorder.js';

/** Flow number `i`, opened at `at`, from `src` to destination port `port`. */
export function benchFlow(i, at, src = '127.0.0.1', port = 9101) {
  return blankEvent({ id: newEventId(), ...flowFields(i, at, src, port) });
}

/** The same flow's fields without its id, for a tree of another build (primary-cost.mjs). */
export function flowFields(i, at, src = '127.0.0.1', port = 9101) {
  return {
    type: 'flow',
    openedAt: at,
    closedAt: at + 1,
    sensor: 'bench',
    listener: 'bench0',
    src: { ip: src, port: 1024 + (i % 60000) },
    dst: { ip: '127.0.0.1', port },
    route: 'nginx',
    action: 'forward',
    backend: 'nginx',
    server: '127.0.0.1:8001',
    sourceMode: 'none',
    bytesIn: 61,
    bytesOut: 1273,
    closeReason: 'client-closed',
    firstBytes: Buffer.from(`GET /${i} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`),
    protocol: 'http',
    protocolFields: { method: 'GET', path: `/${i}`, host: '127.0.0.1' },
  };
}
