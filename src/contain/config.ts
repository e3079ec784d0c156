// `contain:` — honeypots that may answer the flows reaching them but start none of their own.
// The raw schema (the config loader parses the section with it), the defaulted type, and
// the assembly from one to the other.
import type {
  Cidr,
  ContainAllow,
  ContainConfig,
  ContainProtocol,
  ContainSink,
  PortRange,
} from '../config/types.js';

export type { ContainAllow, ContainConfig, ContainProtocol, ContainSink };

export const DEFAULT_DOCKER_SOCKET = '/var/run/docker.sock';

/** nft's `limit rate` takes per second, minute, hour (and day); parseRate's units are these. */
export function nftRate(r: { count: number; perMs: number }): ContainAllow['rate'] {
  const unit = ({ 1000: 'second', 60000: 'minute', 3600000: 'hour' } as const)[r.perMs];
  if (!unit) throw new Error('invalid rate: use N/s, N/m or N/h');
  return { count: r.count, unit };
}

export type RawContain = {
  honeypots?: Cidr[];
  networks?: string[];
  docker: string;
  allow: {
    to: Cidr[];
    protocol: ContainProtocol[];
    ports?: PortRange[];
    rate?: { count: number; perMs: number };
  }[];
  recordInterval: number;
  size: number;
  sink?: { port: number; rate: { count: number; perMs: number }; hold: number };
};

export function toContain(raw: RawContain | undefined): ContainConfig | null {
  if (!raw) return null;
  return {
    honeypots: raw.honeypots ?? [],
    networks: [...new Set(raw.networks ?? [])],
    docker: raw.docker,
    allow: raw.allow.map((a) => ({
      to: a.to,
      protocols: [...new Set(a.protocol)],
      ports: a.ports ?? null,
      rate: a.rate ? nftRate(a.rate) : null,
    })),
    recordIntervalMs: raw.recordInterval,
    sizes: raw.size,
    sink: raw.sink ? { port: raw.sink.port, rate: nftRate(raw.sink.rate)!, holdMs: raw.sink.hold } : null,
  };
}
