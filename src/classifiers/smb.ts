// SMB over TCP: a NetBIOS session header (RFC 1002 4.3; on port 445 [MS-SMB2] 2.1 reuses
// it as a 24-bit length) followed by an SMB1 (\xffSMB) or SMB2/3 (\xfeSMB) header. On
// port 139 a NetBIOS Session Request (type 0x81) comes first; it counts as SMB too.
import { type Classifier, isPrefixOf, matched, NEED_MORE, NO_MATCH, type Verdict } from './types.js';

const MAX_MESSAGE = 8192; // wait for at most this much to read the dialect list
const MAX_DIALECTS = 32;

const SMB1_COMMANDS: Record<number, string> = {
  37: 'trans',
  50: 'trans2',
  114: 'negotiate',
  115: 'session-setup',
  117: 'tree-connect',
};
const SMB2_COMMANDS: Record<number, string> = {
  0: 'negotiate',
  1: 'session-setup',
  3: 'tree-connect',
  5: 'create',
};
const SMB2_DIALECTS: Record<number, string> = {
  514: '2.0.2',
  528: '2.1',
  767: '2.???',
  768: '3.0',
  770: '3.0.2',
  785: '3.1.1',
};

export const smb: Classifier = {
  protocol: 'smb',
  classify(buf: Buffer, final = false): Verdict {
    if (buf.length === 0) return final ? NO_MATCH : NEED_MORE;
    if (buf[0] === 0x81) return sessionRequest(buf, final);
    if (buf[0] !== 0x00) return NO_MATCH;
    if (buf.length >= 4 && buf.readUIntBE(1, 3) < 32) return NO_MATCH; // shorter than any SMB header
    const magic = buf.subarray(4, 8);
    const version = magic[0] === 0xff ? 'smb1' : magic[0] === 0xfe ? 'smb2' : null;
    if (magic.length >= 1 && !version) return NO_MATCH;
    if (!isPrefixOf(magic.subarray(1), 'SMB')) return NO_MATCH;
    if (buf.length < 4) return final ? NO_MATCH : NEED_MORE;
    const length = buf.readUIntBE(1, 3);
    const whole = buf.length >= 4 + length;
    if (!whole && !final && buf.length < MAX_MESSAGE) return NEED_MORE;
    if (buf.length < 8) return NO_MATCH; // final, and not even the protocol id arrived
    const message = buf.subarray(4, 4 + length);
    const fields = version === 'smb1' ? smb1(message) : smb2(message);
    if (!whole) fields.truncated = true;
    return matched('smb', fields);
  },
};

// [MS-CIFS] 2.2.3.1: 32-byte header, command at 4; SMB_COM_NEGOTIATE carries 0x02-prefixed dialect strings.
function smb1(msg: Buffer): Record<string, unknown> {
  const command = msg.length > 4 ? msg[4]! : null;
  const fields: Record<string, unknown> = { version: 'smb1', command: commandName(SMB1_COMMANDS, command) };
  if (command !== 0x72 || msg.length < 33) return fields;
  let pos = 33 + 2 * msg[32]!; // skip WordCount and the words
  if (pos + 2 > msg.length) return fields;
  const byteCount = msg.readUInt16LE(pos);
  pos += 2;
  const end = Math.min(msg.length, pos + byteCount);
  const dialects: string[] = [];
  while (pos < end && msg[pos] === 0x02 && dialects.length < MAX_DIALECTS) {
    const nul = msg.indexOf(0, pos + 1);
    const stop = nul < 0 || nul > end ? end : nul;
    dialects.push(msg.toString('latin1', pos + 1, Math.min(stop, pos + 65)));
    pos = stop + 1;
  }
  fields.dialects = dialects;
  return fields;
}

// [MS-SMB2] 2.2.1: 64-byte header, command at 12; NEGOTIATE body at 64 with DialectCount at +2, dialects at +36.
function smb2(msg: Buffer): Record<string, unknown> {
  const command = msg.length >= 14 ? msg.readUInt16LE(12) : null;
  const fields: Record<string, unknown> = { version: 'smb2', command: commandName(SMB2_COMMANDS, command) };
  if (command !== 0 || msg.length < 68) return fields;
  const count = Math.min(msg.readUInt16LE(66), MAX_DIALECTS);
  const dialects: string[] = [];
  for (let i = 0, pos = 100; i < count && pos + 2 <= msg.length; i++, pos += 2) {
    const d = msg.readUInt16LE(pos);
    dialects.push(SMB2_DIALECTS[d] ?? `0x${d.toString(16).padStart(4, '0')}`);
  }
  fields.dialects = dialects;
  return fields;
}

function commandName(table: Record<number, string>, command: number | null): string | number | null {
  return command === null ? null : (table[command] ?? command);
}

// RFC 1002 4.3.2: 0x81, flags, 16-bit length, then the called and calling names, each
// "first-level encoded": 0x20, 32 letters A-P (two per byte), 0x00.
function sessionRequest(buf: Buffer, final: boolean): Verdict {
  if (buf.length >= 2 && buf[1]! > 0x01) return NO_MATCH;
  if (buf.length >= 5 && buf[4] !== 0x20) return NO_MATCH;
  for (let i = 5; i < Math.min(buf.length, 37); i++) {
    if (buf[i]! < 0x41 || buf[i]! > 0x50) return NO_MATCH;
  }
  if (buf.length < 37) {
    if (!final) return NEED_MORE;
    return buf.length >= 6
      ? matched('smb', { version: 'netbios', command: 'session-request', truncated: true })
      : NO_MATCH;
  }
  let name = '';
  for (let i = 5; i < 37; i += 2) name += String.fromCharCode(((buf[i]! - 0x41) << 4) | (buf[i + 1]! - 0x41));
  const suffix = name.charCodeAt(15);
  const calledName = name
    .slice(0, 15)
    .trimEnd()
    .replace(/[^\x20-\x7e]/g, '?');
  return matched('smb', { version: 'netbios', command: 'session-request', calledName, suffix });
}
