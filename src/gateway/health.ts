// Active TCP health checks, like HAProxy's `check inter rise fall`: every interval, connect
// to each server of a pool; a server that is up goes down after `fall` failures in a row,
// and a down one comes back after `rise` successes in a row. Servers start up.
import net from 'node:net';
import type { Logger } from 'pino';
import type { HealthCheck } from '../config/types.js';
import type { Pool, Server } from './pool.js';

export interface HealthOptions {
  log: Logger;
  /** Sent once connected: a PROXY LOCAL header, so PROXY-speaking honeypots log no broken header. */
  hello?: Buffer;
  onChange?: (server: Server, up: boolean, reason: string) => void;
}

interface Probe {
  socket: net.Socket;
  timer: NodeJS.Timeout;
}

interface ServerState {
  server: Server;
  successes: number; // in a row
  failures: number; // in a row
  probe: Probe | null; // the probe in flight, if any
}

export class HealthChecker {
  private readonly pool: Pool;
  private readonly check: HealthCheck;
  private readonly opts: HealthOptions;
  private readonly states: ServerState[];
  private timer: NodeJS.Timeout | null = null;
  private running = false;

  constructor(pool: Pool, check: HealthCheck, opts: HealthOptions) {
    this.pool = pool;
    this.check = check;
    this.opts = opts;
    this.states = pool.servers.map((server) => ({ server, successes: 0, failures: 0, probe: null }));
  }

  /** Checks every server at once, then every intervalMs. Timers are unref'd: checks never keep the process alive. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.tick();
    this.timer = setInterval(() => this.tick(), this.check.intervalMs);
    this.timer.unref();
  }

  /** Cancels the timer and every probe in flight. */
  stop(): void {
    this.running = false;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const state of this.states) this.cancel(state);
  }

  /** Probes in flight right now (for tests and the admin API). */
  get probing(): number {
    return this.states.filter((s) => s.probe).length;
  }

  private tick(): void {
    for (const state of this.states) {
      // A probe still waiting for its timeout is not doubled up; it reports when it ends.
      if (!state.probe) this.probe(state);
    }
  }

  // Success = the TCP handshake completed; only `hello` is sent, the socket is closed at once.
  private probe(state: ServerState): void {
    const { host, port } = state.server.endpoint;
    const socket = new net.Socket();
    const finish = (error: string | null): void => {
      if (state.probe?.socket !== socket) return; // cancelled, or already reported
      this.cancel(state);
      if (this.running) this.record(state, error);
    };
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // Out of descriptors here says nothing about the server: skip this check, not fail it.
      if (err.code === 'EMFILE' || err.code === 'ENFILE') {
        if (state.probe?.socket === socket) this.cancel(state);
        return;
      }
      finish(`connect ${err.code ?? err.message}`);
    });
    socket.once('connect', () => {
      if (this.opts.hello) socket.end(this.opts.hello);
      finish(null);
    });
    const timer = setTimeout(
      () => finish(`connect timeout after ${this.check.timeoutMs}ms`),
      this.check.timeoutMs,
    );
    timer.unref();
    state.probe = { socket, timer };
    try {
      socket.connect({ host, port });
      socket.unref();
    } catch (err) {
      // connect() throws on arguments it refuses (port 0, say): a failed check, not a crash.
      queueMicrotask(() => finish(`connect ${(err as Error).message}`));
    }
  }

  private cancel(state: ServerState): void {
    const probe = state.probe;
    if (!probe) return;
    state.probe = null;
    clearTimeout(probe.timer);
    probe.socket.destroy();
  }

  private record(state: ServerState, error: string | null): void {
    const { server } = state;
    const name = `server ${server.key} of backend ${this.pool.backend.name}`;
    if (error === null) {
      state.failures = 0;
      state.successes++;
      if (server.up || state.successes < this.check.rise) return;
      const reason = `connected (${plural(state.successes, 'success', 'successes')})`;
      this.pool.setUp(server.key, true);
      state.successes = 0;
      this.opts.log.info({ backend: this.pool.backend.name, server: server.key }, `${name} is UP: ${reason}`);
      this.opts.onChange?.(server, true, reason);
    } else {
      state.successes = 0;
      state.failures++;
      if (!server.up || state.failures < this.check.fall) return;
      const reason = `${error} (${plural(state.failures, 'failure', 'failures')})`;
      this.pool.setUp(server.key, false);
      state.failures = 0;
      this.opts.log.warn(
        { backend: this.pool.backend.name, server: server.key },
        `${name} is DOWN: ${reason}`,
      );
      this.opts.onChange?.(server, false, reason);
    }
  }
}

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}
