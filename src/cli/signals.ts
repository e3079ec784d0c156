// Signals of a running gateway process: SIGHUP reloads, SIGUSR1 reopens files, SIGTERM/SIGINT stop.
import type { Logger } from '../log.js';

/**
 * Handles SIGHUP (`reload`) and SIGUSR1 (`reopen`); resolves `stopped` on SIGTERM or SIGINT.
 * Reloads and the stop wait for `started` and for each other. The handlers stay until
 * detach(): a signal during the grace period must not take its default action (killing the
 * process before the events are flushed). Shared by `run` and the workers' primary.
 */
export function handleSignals(
  started: Promise<void>,
  reload: () => Promise<void>,
  reopen: () => void,
  log: Logger,
) {
  let stopping = false;
  let busy = started;
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => {
    stop = resolve;
  });
  const onHup = () => {
    if (stopping) return log.warn('reload ignored: stopping');
    busy = busy.then(reload);
  };
  const onStop = (signal: string) => {
    log.info({ signal }, stopping ? 'signal received, already stopping' : 'signal received');
    if (stopping) return;
    stopping = true;
    void busy.then(stop);
  };
  process.on('SIGHUP', onHup);
  process.on('SIGUSR1', reopen);
  process.on('SIGTERM', onStop);
  process.on('SIGINT', onStop);
  const detach = () => {
    process.off('SIGHUP', onHup);
    process.off('SIGUSR1', reopen);
    process.off('SIGTERM', onStop);
    process.off('SIGINT', onStop);
  };
  return { stopped, detach };
}
