import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { deserialize, serialize } from 'node:v8';
import { COLUMNS, eventValues, valuesToEvent } from '../../src/events/row.js';
import { sampleEvent } from '../helpers/events.js';

describe('event rows', () => {
  it('gives every column a value, in COLUMNS order', () => {
    const values = eventValues(sampleEvent({ peer: { ip: '198.51.100.250', port: 61000 } }));
    assert.equal(values.length, COLUMNS.length);
    assert.equal(values[COLUMNS.indexOf('peer_port')], 61000);
    assert.equal(values[COLUMNS.indexOf('first_bytes')]?.constructor, Buffer);
  });

  // Workers send their events to the primary as row values (serialization 'advanced').
  it('round-trips an event through the workers channel as the store would read it back', () => {
    const events = [
      sampleEvent({
        src: { ip: '2001:db8::7', port: 50123 },
        peer: { ip: '198.51.100.250', port: 61000 },
        proxyHeader: 'v2',
        firstBytes: Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff]),
        protocol: 'tls',
        protocolFields: { sni: 'example.test', alpn: ['h2', 'http/1.1'] },
        detail: 'some detail',
      }),
      sampleEvent({ type: 'update', closedAt: null, closeReason: null, protocolFields: null }),
    ];
    const sent = deserialize(serialize(events.map(eventValues))) as unknown[][];
    const got = sent.map(valuesToEvent);
    assert.deepEqual(got, events);
    assert.ok(Buffer.isBuffer(got[0]?.firstBytes));
  });
});
