// `run --manage-firewall`: applies the rules at start, removes them at exit, and checks every
// firewall.checkInterval that they are still in place. firewalld reloads, `nft flush ruleset`
// and Docker restarts wipe other tables' rules; when ours vanished they are applied again and
// a `firewall` event records what was missing.
import type { Config } from '../config/types.js';
import { EgressRecorder } from '../contain/egress.js';
import { blankEvent } from '../events/event.js';
import { newEventId, type Recorder } from '../events/recorder.js';
import type { ServerUp } from '../kernel/render.js';
import type { Logger } from '../log.js';
import { apply, type ConntrackResult, remove, sshdListeners, verify } from './apply.js';
import { type ProtectedPort, protectedFrom, type SshdListener } from './render.js';

export class FirewallWatch {
  private timer: NodeJS.Timeout | null = null;
  private checking: Promise<void> = Promise.resolve();
  private queued = false; // a check runs or waits: the timer adds none
  private started = false; // start() was called: from then on the rules may be ours to remove
  // Every sshd listener seen since start: a check while sshd restarts (no listener for a
  // moment) must not put its port back into the divert set, sending the admin to a honeypot.
  private readonly sshd: SshdListener[] = [];
  // contain: the egress counters of the table this watch applies
  private readonly egress: EgressRecorder;
  // kernel routes: which servers health checks left up, so an apply keeps a down one out
  private up: ServerUp | undefined;

  constructor(
    private config: Config,
    private readonly log: Logger,
    private readonly recorder: Recorder,
  ) {
    this.egress = new EgressRecorder(config, log, recorder);
  }

  /** Where kernel maps read server health from (the gateway's pools); absent: every server up. */
  useHealth(up: ServerUp): void {
    this.up = up;
  }

  /** Applies the rules (throws HG_ERR_FIREWALL when nft or ip fails), then starts checking. */
  async start(): Promise<void> {
    this.started = true; // before apply: a half-done apply is ours to undo
    const r = await apply(this.config, { protectedPorts: await this.protectedPorts(), up: this.up });
    this.log.info({ protectedPorts: r.protectedPorts.map((p) => p.port) }, 'firewall rules applied');
    this.logConntrack(r.conntrack);
    this.record('applied at start', []);
    this.schedule();
    await this.egress.start();
  }

  /** What apply's stale-UDP step did: deletions as info, a step that could not run as a warning. */
  private logConntrack(ct: ConntrackResult | null | undefined): void {
    if (!ct) return;
    if ('skipped' in ct) this.log.warn({ code: 'HG_ERR_FIREWALL' }, ct.skipped);
    else if (ct.deleted.length || ct.failed.length)
      this.log.info(
        { deleted: ct.deleted.length, failed: ct.failed },
        'stale UDP conntrack entries on diverted ports deleted',
      );
  }

  /** A reload: the new config's rules replace the old ones (same table, one transaction). */
  async reload(config: Config): Promise<void> {
    const old = this.config;
    this.config = config;
    await this.checking;
    await this.egress.read(); // applying empties the egress sets: their counts first
    await this.egress.reload(config);
    if (JSON.stringify(old.firewall) !== JSON.stringify(config.firewall)) await remove(old);
    const r = await apply(config, { protectedPorts: await this.protectedPorts(), up: this.up });
    this.log.info('firewall rules re-applied for the new config');
    this.logConntrack(r.conntrack);
    this.schedule();
  }

  /**
   * Removes the rules, but only when start() ran: a run that failed before applying (its
   * tproxy port taken by another honeygate) must not remove that one's rules.
   */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.checking;
    await this.egress.stop();
    if (!this.started) return;
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
      // One check at a time and none queued: a check slower than the interval (nft, ss and the
      // Docker API on a busy host) would otherwise pile up checks that reload waits behind.
      if (this.queued) return;
      this.queued = true;
      this.checking = this.checking
        .then(() => this.check())
        .finally(() => {
          this.queued = false;
        });
    }, this.config.firewall.checkIntervalMs);
    this.timer.unref();
  }

  /** One check; never throws (a failing nft is logged and tried again next time). */
  async check(): Promise<void> {
    try {
      const protectedPorts = await this.protectedPorts();
      const missing = await verify(this.config, { protectedPorts });
      if (!missing.length) return;
      this.log.warn(
        { code: 'HG_ERR_FIREWALL', missing },
        'firewall rules changed from outside; applying them again',
      );
      if (this.config.contain) await this.egress.read();
      const r = await apply(this.config, { protectedPorts, up: this.up });
      this.logConntrack(r.conntrack);
      this.record('re-applied', missing);
    } catch (err) {
      this.log.error({ code: 'HG_ERR_FIREWALL' }, (err as Error).message);
    }
  }

  /** The admin port and every sshd port seen since start (22 while none was ever seen). */
  private async protectedPorts(): Promise<ProtectedPort[]> {
    for (const s of await sshdListeners()) {
      if (!this.sshd.some((x) => x.address === s.address)) this.sshd.push(s);
    }
    return protectedFrom(this.config, this.sshd);
  }

  private record(what: string, missing: string[]): void {
    const now = Date.now();
    const event = blankEvent({
      id: newEventId(),
      type: 'firewall',
      openedAt: now,
      closedAt: now,
      sensor: this.config.events.sensor,
      detail: missing.length ? `${what}: ${missing.join('; ')}` : what,
    });
    this.recorder.record(event);
  }
}
