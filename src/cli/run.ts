// `honeygate run`: load config -> open sinks -> bind -> serve until a signal -> drain -> exit.
// With `workers:` above 1 the same, split: a primary (src/workers/primary.ts) forks worker
// processes that bind and serve, and keeps the sinks, the admin API and the firewall.
import { type Command, Option } from 'commander';
import { startAdmin } from '../admin/server.js';
import { loadConfigFile } from '../config/load.js';
import { sinkPaths } from '../config/store-dirs.js';
import { Enricher } from '../enrich/mmdb.js';
import type { Sink } from '../events/event.js';
import { Recorder } from '../events/recorder.js';
import { openSinks } from '../events/sinks.js';
import { openJournal, recordRecovered } from '../events/writeahead.js';
import { FirewallWatch } from '../firewall/watch.js';
import { Gateway } from '../gateway/gateway.js';
import { KernelFlows } from '../kernel/conntrack.js';
import { createLogger, type Logger, logFatal } from '../log.js';
import { dropToUser, eventFiles } from '../privileges/drop.js';
import { WORKER_FLAG } from '../workers/messages.js';
import { runPrimary } from '../workers/primary.js';
import { runWorker } from '../workers/worker.js';
import { loadOrReport } from './load-config.js';
import { handleSignals } from './signals.js';

export function register(program: Command): void {
  program
    .command('run')
    .description(
      'run the gateway until SIGTERM or SIGINT (SIGHUP reloads the config, SIGUSR1 reopens log files)',
    )
    .requiredOption('-c, --config <file>', 'configuration file (YAML)')
    .option(
      '--manage-firewall',
      'apply the nftables rules and policy routing at start, re-apply them when they vanish, remove them at exit',
    )
    .addOption(new Option(`${WORKER_FLAG} <index>`, 'internal: run as worker INDEX of a primary').hideHelp())
    .action(async (opts: { config: string; manageFirewall?: boolean; worker?: string }) => {
      process.exitCode =
        opts.worker === undefined
          ? await run(opts.config, { manageFirewall: opts.manageFirewall === true })
          : await runWorker(opts.config, Number(opts.worker));
    });
}

export async function run(path: string, opts: { manageFirewall?: boolean } = {}): Promise<number> {
  const loaded = loadOrReport('run', path, undefined, '; not started');
  if (!loaded) return 2;
  const config = loaded.config;
  const log = createLogger(config.log.level, config.log.format);
  for (const w of loaded.warnings) log.warn({ config: path }, w);
  if (config.workers > 1) return runPrimary(path, config, log, opts);

  let sinks: Sink[];
  try {
    sinks = openSinks(config, log);
  } catch (err) {
    logFatal(log, err);
    return 1;
  }
  // Before the first accept: the flows a killed previous run left unrecorded become events.
  const { journal, recovered } = openJournal(config.events, 'main', log, { recoverAll: true, own: true });
  const recorder = new Recorder(sinks, {
    queueSize: config.events.queueSize,
    batchMs: config.events.batchMs,
    log,
    scan: config.events.scan ?? null,
    journal,
  });
  try {
    recorder.enricher = Enricher.open(config.events.enrich);
  } catch (err) {
    logFatal(log, err);
    await recorder.close();
    return 1;
  }
  await recordRecovered(recorder, recovered, log);
  const gateway = new Gateway(config, log, recorder);
  const firewall = opts.manageFirewall ? new FirewallWatch(config, log, recorder) : null;
  firewall?.useHealth((backend, server) => gateway.serverUp(backend, server));
  const kernelFlows = new KernelFlows(log, recorder);
  let admin: Awaited<ReturnType<typeof startAdmin>> | null = null;
  // Handlers before the first rule goes in: a SIGINT while the firewall is applied must end
  // in the normal shutdown (which removes the rules), not in the default kill.
  let started!: () => void;
  const signals = handleSignals(
    new Promise<void>((resolve) => {
      started = resolve;
    }),
    () => reload(path, gateway, firewall, log, recorder, kernelFlows),
    () => {
      recorder.reopen();
      log.info(
        gateway.config.events.jsonl ? 'event files reopened' : 'event files reopened (none configured)',
      );
    },
    log,
  );
  try {
    await gateway.start();
    // Subscribed before the rules: no kernel-routed flow goes unrecorded.
    await kernelFlows.apply(config);
    // Rules after the sockets: a diverted flow needs the tproxy socket to land on.
    await firewall?.start();
    if (config.admin) {
      admin = await startAdmin(config.admin, {
        gateway,
        recorder,
        store: () => gateway.config.events.sqlite,
        log,
      });
    }
    // Last: everything that needs root is open or applied.
    dropToUser(config, log, eventFiles(config), path);
  } catch (err) {
    logFatal(log, err);
    await admin?.close();
    await firewall?.stop();
    await gateway.stop();
    await kernelFlows.stop();
    await recorder.close();
    signals.detach();
    return 1;
  }
  // Where everything is, in the one line an operator looks for.
  log.info(
    {
      config: path,
      listeners: config.listeners.length,
      routes: config.routes.length,
      events: sinkPaths(config.events),
      admin: admin?.address ?? 'off',
    },
    'ready',
  );
  started();
  await signals.stopped;
  log.info({ openFlows: gateway.openFlows }, 'stopping');
  await admin?.close();
  await gateway.stop();
  // Rules last: open transparent flows need them for their packets until the grace period ends.
  await kernelFlows.settle(); // the kernel's last refusals, while its table still counts them
  await firewall?.stop();
  await kernelFlows.stop();
  await recorder.close();
  signals.detach();
  log.info({ events: recorder.stats() }, 'stopped');
  return 0;
}

/** An invalid config or a failed bind is rejected with its errors; the old config keeps serving. */
async function reload(
  path: string,
  gateway: Gateway,
  firewall: FirewallWatch | null,
  log: Logger,
  recorder: Recorder,
  kernelFlows?: KernelFlows,
): Promise<void> {
  const loaded = loadConfigFile(path);
  if (!loaded.ok) {
    log.error({ config: path, errors: loaded.errors }, 'reload rejected');
    return;
  }
  // The databases first: a file that cannot be read rejects the reload, as a bad config does.
  let enricher: Enricher | null;
  try {
    enricher = Enricher.open(loaded.config.events.enrich);
  } catch (err) {
    log.error({ config: path, errors: [(err as Error).message] }, 'reload rejected');
    return;
  }
  const before = gateway.config;
  let firewallError: unknown = null;
  const applyFirewall = async () => {
    try {
      await kernelFlows?.settle(); // the old table's refusal counters go with it
      await firewall?.reload(loaded.config);
    } catch (err) {
      firewallError = err;
    }
  };
  try {
    await gateway.reload(loaded.config, applyFirewall);
  } catch (err) {
    log.error({ config: path, errors: [(err as Error).message] }, 'reload rejected');
    return;
  }
  if (firewallError) {
    log.error(
      { code: 'HG_ERR_FIREWALL' },
      `config reloaded, but its firewall rules failed: ${(firewallError as Error).message}`,
    );
  }
  recorder.enricher = enricher; // read again even at the same paths: a database updated in place
  await kernelFlows
    ?.apply(loaded.config)
    .catch((err: Error) => log.error({ code: 'HG_ERR_FIREWALL' }, err.message));
  log.level = loaded.config.log.level;
  for (const w of loaded.warnings) log.warn({ config: path }, w);
  // Sinks and the admin API hold files and a port; swapping them live could lose events.
  const { sensor: _a, enrich: _c, ...eventsBefore } = before.events;
  const { sensor: _b, enrich: _d, ...eventsAfter } = loaded.config.events;
  const kept = [
    JSON.stringify(eventsBefore) !== JSON.stringify(eventsAfter) && 'events',
    JSON.stringify(before.admin) !== JSON.stringify(loaded.config.admin) && 'admin',
    JSON.stringify(before.user) !== JSON.stringify(loaded.config.user) && 'user',
  ].filter(Boolean);
  if (kept.length)
    log.warn({ config: path, sections: kept }, `changes to ${kept.join(' and ')} take effect on restart`);
  log.info({ config: path }, 'config reloaded');
}
