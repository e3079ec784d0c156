// Writing a PKI directory's files: keys mode 0600, certificates 0644, each written to a
// temporary file and renamed into place, so a crash never leaves half a key; an existing
// file is replaced only when the caller says so (--force).
import {
  chmodSync,
  closeSync,
  existsSync,
  fsyncSync,
  openSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { HoneygateError } from '../errors.js';

export const KEY_MODE = 0o600;
export const CERT_MODE = 0o644;

/** Throws HG_ERR_PKI naming the first of `paths` that exists, unless `force`. */
export function refuseOverwrite(paths: string[], force: boolean): void {
  if (force) return;
  for (const p of paths) {
    if (existsSync(p)) {
      throw new HoneygateError('HG_ERR_PKI', `${p} exists (pass --force to replace it)`);
    }
  }
}

/** Writes `data` to `path` with `mode` (whatever the umask) through a temporary file and a rename. Throws HG_ERR_PKI. */
export function writeFileAtomic(path: string, data: string, mode: number): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  let fd = -1;
  try {
    fd = openSync(tmp, 'wx', mode);
    writeSync(fd, data);
    fsyncSync(fd);
    closeSync(fd);
    fd = -1;
    chmodSync(tmp, mode);
    renameSync(tmp, path);
  } catch (err) {
    if (fd >= 0) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // not created, or already renamed
    }
    throw new HoneygateError('HG_ERR_PKI', `cannot write ${path}: ${(err as Error).message}`, { cause: err });
  }
}
