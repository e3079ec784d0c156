// Everything built from one config: the gateway swaps a whole Runtime on reload, and each
// flow keeps the Runtime it was accepted under, so open flows finish under the old config.
import type { Config, Endpoint, SourceMode } from '../config/types.js';
import type { Recorder } from '../events/recorder.js';
import { syncMaps } from '../kernel/maps.js';
import { isKernel } from '../kernel/plan.js';
import type { Logger } from '../log.js';
import { formatEndpoint } from '../net/address.js';
import { encodeProxyV2 } from '../net/proxy-protocol.js';
import type { RecordStore } from '../record/store.js';
import type { Tunnels } from '../tunnel/index.js';
import type { Deadlines } from './deadlines.js';
import { HealthChecker } from './health.js';
import { Pool } from './pool.js';

export class Runtime {
  readonly pools = new Map<string, Pool>();
  private readonly checkers: HealthChecker[] = [];
  private kernelSync: Promise<void> = Promise.resolve();
  private kernelUnmapped = false;

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
        // engine: kernel: the firewall's map follows the pool (src/kernel/maps.ts)
        onChange: isKernel(pool.backend) ? () => this.syncKernel(pool) : undefined,
      });
      checker.start();
      this.checkers.push(checker);
    }
  }

  /**
   * Rewrites a kernel backend's map to the pool's live servers; a failure is logged, never
   * thrown. One rewrite at a time, each reading the pool when it runs: never a stale one last.
   */
  private syncKernel(pool: Pool): void {
    const up = (e: Endpoint) => pool.get(formatEndpoint(e))?.up ?? true;
    const name = pool.backend.name;
    this.kernelSync = this.kernelSync
      .then(() => syncMaps(pool.backend, up))
      .then((why) => {
        if (why === null)
          this.log.info({ backend: name }, `kernel map of backend ${name} updated from health checks`);
        // no table yet (health checks start before --manage-firewall applies it, which renders
        // the maps from the same pools) or none at all (`firewall apply` not run): say so once
        else if (/No such file or directory/.test(why)) {
          if (!this.kernelUnmapped)
            this.log.info(
              { backend: name },
              `no kernel map of backend ${name} to update yet: the firewall is not applied`,
            );
          this.kernelUnmapped = true;
        } else
          this.log.warn(
            { code: 'HG_ERR_FIREWALL', backend: name },
            `cannot update the kernel map of backend ${name}: ${why}`,
          );
      });
  }

  /** True unless a health check took the server out (for the firewall's kernel maps). */
  serverUp(backend: string, server: Endpoint): boolean {
    return this.pools.get(backend)?.get(formatEndpoint(server))?.up ?? true;
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
