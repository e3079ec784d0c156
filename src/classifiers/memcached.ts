// memcached over UDP (its protocol.txt, "UDP protocol"): an 8-byte frame header (request
// id, sequence number, datagram count, reserved 0), then a text command or a binary request
// (magic 0x80). `stats` and `get` of a large key are the amplification attack.
import { type Classifier, matched, NO_MATCH, type Verdict } from './types.js';

const COMMANDS =
  /^(get|gets|gat|gats|set|add|replace|append|prepend|cas|delete|incr|decr|touch|stats|version|flush_all|verbosity|mg|ms|md|ma|mn|me)(?: |\r?\n|$)/;

export const memcached: Classifier = {
  protocol: 'memcached',
  classify(buf: Buffer): Verdict {
    if (buf.length < 9) return NO_MATCH;
    const seq = buf.readUInt16BE(2);
    const total = buf.readUInt16BE(4);
    if (buf.readUInt16BE(6) !== 0 || total === 0 || seq >= total) return NO_MATCH;
    if (buf[8] === 0x80) {
      if (buf.length < 8 + 24) return NO_MATCH;
      return matched('memcached', { binary: true, opcode: buf[9]!, requestId: buf.readUInt16BE(0) });
    }
    const line = buf.toString('latin1', 8, Math.min(buf.length, 8 + 256));
    const m = COMMANDS.exec(line);
    if (!m) return NO_MATCH;
    const end = line.search(/\r?\n/);
    return matched('memcached', {
      command: m[1],
      line: (end >= 0 ? line.slice(0, end) : line).replace(/[^\x20-\x7e]/g, '.'),
      requestId: buf.readUInt16BE(0),
    });
  },
};
