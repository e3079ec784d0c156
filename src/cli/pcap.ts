// `honeygate pcap ID... > out.pcap`: recorded sessions as a pcap file (src/record/pcap.ts)
// that Wireshark and tshark open and follow.
import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { toPcap } from '../record/pcap.js';
import { readSession, type Session } from '../record/read.js';
import { DEFAULT_RECORDINGS, type RecordingsOptions, recordingsDir } from './replay.js';

interface PcapOptions extends RecordingsOptions {
  output?: string;
}

export function register(program: Command): void {
  program
    .command('pcap')
    .description('write recorded sessions as pcap (Ethernet, IPv4/IPv6, TCP) to stdout or a file')
    .argument('<id...>', 'flow ids (or .hgrec files)')
    .option('-c, --config <file>', 'read the recordings directory from this config (events.recordings.path)')
    .option('--dir <dir>', `the recordings directory (default ${DEFAULT_RECORDINGS})`)
    .option('-o, --output <file>', 'write here instead of stdout')
    .action((ids: string[], opts: PcapOptions) => {
      process.exitCode = runPcap(ids, opts, {
        out: (b) => (opts.output ? writeFileSync(opts.output, b) : process.stdout.write(b)),
        err: (t) => process.stderr.write(t),
        isTTY: !opts.output && process.stdout.isTTY === true,
      });
    });
}

/** Returns the exit code: 0 written, 1 a recording missing or unreadable (nothing written), 2 usage. */
export function runPcap(
  ids: string[],
  opts: PcapOptions,
  io: { out: (b: Buffer) => void; err: (t: string) => void; isTTY?: boolean },
): number {
  if (io.isTTY) {
    io.err('honeygate pcap: stdout is a terminal; redirect it (> out.pcap) or use -o FILE\n');
    return 2;
  }
  const dir = recordingsDir(opts, io.err);
  if (dir === null) return 2;
  const sessions: Session[] = [];
  for (const id of ids) {
    try {
      sessions.push(readSession(dir, id));
    } catch (err) {
      io.err(`honeygate pcap: ${(err as Error).message}\n`);
      return 1;
    }
  }
  io.out(toPcap(sessions));
  return 0;
}
