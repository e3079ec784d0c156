// Everything built from one config: the gateway swaps a whole Runtime on reload, and each
// flow keeps the Runtime it was accepted under, so open flows finish under the old config.
import type { Config, SourceMode } from '../config/types.js';
import type { Recorder } from '../events/recorder.js';
import type { Logger } from '../log.js';
import { encodeProxyV2 } from '../net/proxy-protocol.js';
import type { RecordStore } from '../record/store.js';
import type { Tunnels } from '../tunnel/index.js';
import type { Deadlines } from './deadlines.js';
import { HealthChecker } from './health.js';
import { Pool } from './pool.js';

export class Runtime {
  readonly pools = new Map<string, Pool>();
  private readonly checkers: HealthChecker[] = [];

  constructor(
    readonly config: Config,
    readonly log: Logger,
    readonly recorder: Recorder,
    /** Not this Runtime's own: the gateway's one sweep, which outlives every Runtime. */
    readonly deadlines: Deadlines,
    /** The gateway's session recordings (src/record/), or null when nothing is recorded. */
    readonly recordings: RecordStore | null = null,
    /** The gateway's tunnels (src/tunnel), which outlive every Runtime too; null: none. */
    readonly tunnels: Tunnels | null = null,
  ) {
    for (const [name, backend] of config.backends) this.pools.set(name, new Pool(backend));
  }

  listener(name: string) {
    return this.config.listeners.find((l) => l.name === name) ?? null;
  }

  /** Carries server health and active counts over from the runtime this one replaces. */
  adopt(old: Runtime): void {
    for (const [name, pool] of this.pools) {
      const before = old.pools.get(name);
      if (before) pool.adopt(before);
    }
  }

  start(): void {
    for (const pool of this.pools.values()) {
      const check = pool.backend.health;
      if (!check) {
        // Without checks servers count as up, even one an older config's checks marked down.
        for (const server of pool.servers) server.up = true;
        continue;
      }
      const checker = new HealthChecker(pool, check, {
        log: this.log,
        hello: checkHello(pool.backend.source),
      });
      checker.start();
      this.checkers.push(checker);
    }
  }

  stop(): void {
    for (const c of this.checkers) c.stop();
    this.checkers.length = 0;
  }
}

/** What a health check says to a server, like HAProxy's check-send-proxy: the PROXY
 * protocol's "no client, just checking" (v2 LOCAL, v1 UNKNOWN). */
function checkHello(source: SourceMode): Buffer | undefined {
  if (source === 'proxy-v2') return encodeProxyV2({ command: 'LOCAL' });
  if (source === 'proxy-v1') return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  return undefined;
}
