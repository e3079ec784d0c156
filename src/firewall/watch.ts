// `run --manage-firewall`: applies the rules at start, removes them at exit, and checks every
// firewall.checkInterval that they are still in place. firewalld reloads, `nft flush ruleset`
// and Docker restarts wipe other tables' rules; when ours vanished they are applied again and
// a `firewall` event records what was missing.
import type { Config } from '../config/types.js';
import type { FlowEvent } from '../events/event.js';
import { newEventId, type Recorder } from '../events/recorder.js';
import type { Logger } from '../log.js';
import { apply, remove, verify } from './apply.js';

export class FirewallWatch {
  private timer: NodeJS.Timeout | null = null;
  private checking: Promise<void> = Promise.resolve();

  constructor(
    private config: Config,
    private readonly log: Logger,
    private readonly recorder: Recorder,
  ) {}

  /** Applies the rules (throws HG_ERR_FIREWALL when nft or ip fails), then starts checking. */
  async start(): Promise<void> {
    const r = await apply(this.config);
    this.log.info({ protectedPorts: r.protectedPorts.map((p) => p.port) }, 'firewall rules applied');
    this.record('applied at start', []);
    this.schedule();
  }

  /** A reload: the new config's rules replace the old ones (same table, one transaction). */
  async reload(config: Config): Promise<void> {
    const old = this.config;
    this.config = config;
    await this.checking;
    if (JSON.stringify(old.firewall) !== JSON.stringify(config.firewall)) await remove(old);
    await apply(config);
    this.log.info('firewall rules re-applied for the new config');
    this.schedule();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.checking;
    try {
      await remove(this.config);
      this.log.info('firewall rules removed');
    } catch (err) {
      this.log.error({ code: 'HG_ERR_FIREWALL' }, (err as Error).message);
    }
  }

  private schedule(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = setInterval(() => {
      this.checking = this.checking.then(() => this.check());
    }, this.config.firewall.checkIntervalMs);
    this.timer.unref();
  }

  /** One check; never throws (a failing nft is logged and tried again next time). */
  async check(): Promise<void> {
    try {
      const missing = await verify(this.config);
      if (!missing.length) return;
      this.log.warn(
        { code: 'HG_ERR_FIREWALL', missing },
        'firewall rules changed from outside; applying them again',
      );
      await apply(this.config);
      this.record('re-applied', missing);
    } catch (err) {
      this.log.error({ code: 'HG_ERR_FIREWALL' }, (err as Error).message);
    }
  }

  private record(what: string, missing: string[]): void {
    const now = Date.now();
    const event: FlowEvent = {
      id: newEventId(),
      type: 'firewall',
      openedAt: now,
      closedAt: now,
      sensor: this.config.events.sensor,
      listener: '',
      src: { ip: '', port: 0 },
      dst: { ip: '', port: 0 },
      peer: null,
      proxyHeader: null,
      route: null,
      action: null,
      backend: null,
      server: null,
      sourceMode: null,
      bytesIn: 0,
      bytesOut: 0,
      durationMs: 0,
      closeReason: null,
      firstBytes: Buffer.alloc(0),
      protocol: null,
      protocolFields: null,
      count: 1,
      detail: missing.length ? `${what}: ${missing.join('; ')}` : what,
    };
    this.recorder.record(event);
  }
}
