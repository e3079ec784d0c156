// One NATS connection from an `events.nats` section: servers, a .creds file, TLS. Reconnects
// forever (a sensor outlives any broker outage); the caller decides what to do while it is away.
import { readFileSync } from 'node:fs';
import {
  connect,
  credsAuthenticator,
  type NatsConnection,
  type NodeConnectionOptions,
} from '@nats-io/transport-node';
import type { NatsConfig } from './config.js';

export function connectionOptions(cfg: NatsConfig, name: string): NodeConnectionOptions {
  const opts: NodeConnectionOptions = {
    servers: cfg.servers,
    name,
    reconnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 1000,
    timeout: 5000,
    pingInterval: 10_000,
    maxPingOut: 2,
    // The client otherwise builds an Error per request to keep its stack: a fifth of the sink's CPU.
    noAsyncTraces: true,
  };
  if (cfg.credentials) opts.authenticator = credsAuthenticator(readFileSync(cfg.credentials));
  if (cfg.tls) {
    opts.tls = {
      ...(cfg.tls.ca ? { caFile: cfg.tls.ca } : {}),
      ...(cfg.tls.cert ? { certFile: cfg.tls.cert } : {}),
      ...(cfg.tls.key ? { keyFile: cfg.tls.key } : {}),
    };
  }
  return opts;
}

export function connectNats(cfg: NatsConfig, name: string): Promise<NatsConnection> {
  return connect(connectionOptions(cfg, name));
}
