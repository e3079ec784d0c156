// The tunnels a gateway holds: the hubs (one per tunnel listener) and the sensor's clients
// (one per tunnel backend). They outlive a config, like the gateway's sockets: a reload
// updates them in place (new certificates for new tunnels) and open flows keep theirs.
import type { Config } from '../config/types.js';
import type { Logger } from '../log.js';
import { Hub, type HubStats, type OnTunneled } from './hub.js';
import { TunnelClient, type TunnelStats } from './sensor.js';

export type { HubStats, OnTunneled, TunnelStats };

export class Tunnels {
  private readonly hubs = new Map<string, Hub>();
  private readonly clients = new Map<string, TunnelClient>();

  constructor(
    private readonly log: Logger,
    private readonly onFlow: OnTunneled,
  ) {}

  /** The client of a tunnel backend, or null. */
  client(backend: string): TunnelClient | null {
    return this.clients.get(backend) ?? null;
  }

  /**
   * Brings the tunnels in line with `config`: new hubs bound first (a failure changes
   * nothing and throws HG_ERR_LISTEN), then updates, then what the config no longer has.
   * Returns the new hubs' listening lines.
   */
  async apply(config: Config): Promise<{ listener: string; address: string; ports: number }[]> {
    const started: Hub[] = [];
    const wanted = config.listeners.filter((l) => l.tunnel);
    try {
      for (const l of wanted) {
        const hub = this.hubs.get(l.name);
        if (hub?.sameAddress(l)) continue;
        const next = new Hub(l, this.log, this.onFlow);
        await next.listen();
        started.push(next);
      }
    } catch (err) {
      for (const h of started) h.close();
      throw err;
    }
    for (const l of wanted) {
      const hub = this.hubs.get(l.name);
      if (hub?.sameAddress(l)) hub.update(l);
    }
    for (const h of started) {
      this.hubs.get(h.name)?.close();
      this.hubs.set(h.name, h);
    }
    for (const [name, hub] of this.hubs) {
      if (wanted.some((l) => l.name === name)) continue;
      hub.close();
      this.hubs.delete(name);
    }
    const backends = [...config.backends.values()].filter((b) => b.tunnel);
    for (const b of backends) {
      const client = this.clients.get(b.name);
      if (client) client.update(b);
      else {
        const c = new TunnelClient(b, config.events.sensor, this.log);
        this.clients.set(b.name, c);
        c.start();
      }
    }
    for (const [name, client] of this.clients) {
      if (backends.some((b) => b.name === name)) continue;
      client.stop();
      this.clients.delete(name);
    }
    return started.map((h) => ({ listener: h.name, address: h.address, ports: 1 }));
  }

  /** No new tunnels and streams on the hubs; the sensors' tunnels stay for open flows. */
  stopAccepting(): void {
    for (const h of this.hubs.values()) h.stopAccepting();
  }

  /** Ends every tunnel; flows still open end as `shutdown`. */
  close(): void {
    for (const h of this.hubs.values()) h.close();
    for (const c of this.clients.values()) c.stop();
    this.hubs.clear();
    this.clients.clear();
  }

  stats(): { hubs: HubStats[]; tunnels: TunnelStats[] } {
    return {
      hubs: [...this.hubs.values()].map((h) => h.stats()),
      tunnels: [...this.clients.values()].map((c) => c.stats()),
    };
  }
}
