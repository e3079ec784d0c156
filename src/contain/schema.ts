// The raw shape of `contain:` (docs/configuration.md, docs/containment.md).
import { z } from 'zod';
import { cidr, parsePortRange } from '../config/schema.js';
import {
  conv,
  describe,
  intIn,
  list,
  nonEmptyText,
  obj,
  oneOf,
  parseRate,
  positiveDuration,
} from '../config/zod.js';
import { type ContainProtocol, DEFAULT_DOCKER_SOCKET, nftRate } from './config.js';

const PROTOCOLS: readonly ContainProtocol[] = ['tcp', 'udp'];

/** A Docker network name as `docker network create` accepts it. */
export function networkName(v: unknown): string {
  const s = typeof v === 'string' ? v : '';
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(s)) {
    throw new Error(
      `invalid Docker network name ${describe(v)} (letters, digits, _.-, starting with a letter or digit)`,
    );
  }
  return s;
}

/** A rate nft's `limit rate` can express. */
function allowRate(v: unknown): { count: number; perMs: number } {
  const r = parseRate(v);
  nftRate(r);
  return r;
}

export const containAllowSchema = obj({
  to: list(cidr, { min: 1 }),
  protocol: list(oneOf(PROTOCOLS), { min: 1 }).default(['tcp', 'udp']),
  ports: list((v) => parsePortRange(v), { min: 1 }).optional(),
  rate: conv(allowRate).optional(),
});

/** The sink's defaults: docs/containment.md. */
export const SINK_DEFAULTS = { port: 15071, rate: '10/s', hold: '5s' } as const;

export const containSinkSchema = obj({
  port: conv(intIn(1, 65535)).default(SINK_DEFAULTS.port),
  rate: conv(allowRate).default(parseRate(SINK_DEFAULTS.rate)),
  hold: conv(positiveDuration).default(5_000),
});

export const containSchema = obj({
  honeypots: list(cidr, { min: 1 }).optional(),
  networks: list(networkName, { min: 1 }).optional(),
  docker: conv(nonEmptyText).default(DEFAULT_DOCKER_SOCKET),
  allow: z
    .array(containAllowSchema, { error: 'expected a list of { to, protocol, ports, rate }' })
    .default([]),
  recordInterval: conv(positiveDuration).default(10_000),
  size: conv(intIn(16, 1_000_000)).default(65_536),
  sink: containSinkSchema.optional(),
});

export type RawContainSection = z.output<typeof containSchema>;

/** Problems between keys of `contain:`; `error(path, message)` reports one. */
export function checkContain(
  raw: RawContainSection,
  error: (path: (string | number)[], message: string) => void,
): void {
  if (!raw.honeypots?.length && !raw.networks?.length) {
    error(
      ['contain'],
      'names nothing to contain: give honeypots (addresses or subnets) or networks (Docker networks by name)',
    );
  }
  raw.allow.forEach((a, i) => {
    for (const c of a.to) {
      if (c.prefix === 0) {
        error(
          ['contain', 'allow', i, 'to'],
          `${c.text} allows every address: that is no containment (name the resolver or server)`,
        );
      }
    }
  });
  for (const c of raw.honeypots ?? []) {
    if (c.prefix === 0)
      error(['contain', 'honeypots'], `${c.text} would hold in every address, this host's peers too`);
  }
}
