// Finding and reading a recording for `replay` and `pcap`: by flow id in the recordings
// directory, or by the path of a .hgrec file.
import { readFileSync } from 'node:fs';
import { type Chunk, decode, type RecordingHeader } from './format.js';
import { EXT, recordingPath } from './store.js';

export interface Session {
  header: RecordingHeader;
  chunks: Chunk[];
  complete: boolean; // false: the file ends mid-record (honeygate was stopped while writing)
}

/** Reads recording `idOrPath`; throws an Error whose message names what was missing or wrong. */
export function readSession(dir: string, idOrPath: string): Session {
  const path = idOrPath.endsWith(EXT) ? idOrPath : recordingPath(dir, idOrPath);
  if (!idOrPath.endsWith(EXT) && !/^[0-9a-f]{32}$/i.test(idOrPath))
    throw new Error(`${JSON.stringify(idOrPath)} is neither a flow id (32 hex digits) nor a ${EXT} file`);
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT')
      throw new Error(`no recording ${idOrPath} in ${dir} (not recorded, or evicted for the disk budget)`);
    throw new Error(`cannot read ${path}: ${e.message}`);
  }
  return decode(buf);
}
