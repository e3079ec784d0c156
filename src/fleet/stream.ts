// Stream setup as code: the JetStream stream every sensor publishes into, and the durable
// consumer the collectors share. `honeygate fleet init` runs ensureStream; `collect` runs
// ensureConsumer at start. Both create what is missing and update what differs.
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import type { NatsConfig } from './config.js';

/** The stream's settings from the config: subjects SUBJECT.>, file storage, limits, replicas, de-duplication window. */
export function streamConfig(cfg: NatsConfig) {
  return {
    name: cfg.stream,
    subjects: [`${cfg.subject}.>`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: nanos(cfg.maxAgeMs),
    max_bytes: cfg.maxBytes === 0 ? -1 : cfg.maxBytes,
    num_replicas: cfg.replicas,
    duplicate_window: nanos(cfg.duplicateWindowMs),
  };
}

/** Creates the stream, or updates it when it exists. Resolves to 'created' or 'updated'. */
export async function ensureStream(jsm: JetStreamManager, cfg: NatsConfig): Promise<'created' | 'updated'> {
  const want = streamConfig(cfg);
  try {
    await jsm.streams.info(cfg.stream);
  } catch {
    await jsm.streams.add(want);
    return 'created';
  }
  await jsm.streams.update(cfg.stream, want);
  return 'updated';
}

/** The collectors' durable pull consumer: every message, explicit acks, redelivered after 30 s without one. */
export async function ensureConsumer(jsm: JetStreamManager, cfg: NatsConfig): Promise<void> {
  try {
    await jsm.consumers.info(cfg.stream, cfg.consumer);
    return;
  } catch {
    // missing: create it
  }
  await jsm.consumers.add(cfg.stream, {
    durable_name: cfg.consumer,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: `${cfg.subject}.>`,
    ack_wait: nanos(30_000),
    max_ack_pending: 20_000,
  });
}
