// Everything built from one config: the gateway swaps a whole Runtime on reload, and each
// flow keeps the Runtime it was accepted under, so open flows finish under the old config.
import type { Config } from '../config/types.js';
import type { Recorder } from '../events/recorder.js';
import type { Logger } from '../log.js';
import { HealthChecker } from './health.js';
import { Pool } from './pool.js';

export class Runtime {
  readonly pools = new Map<string, Pool>();
  private readonly checkers: HealthChecker[] = [];

  constructor(
    readonly config: Config,
    readonly log: Logger,
    readonly recorder: Recorder,
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
      const log = this.log.child({ backend: pool.backend.name });
      const checker = new HealthChecker(pool, check, { log });
      checker.start();
      this.checkers.push(checker);
    }
  }

  stop(): void {
    for (const c of this.checkers) c.stop();
    this.checkers.length = 0;
  }
}
