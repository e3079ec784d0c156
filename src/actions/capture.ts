// Built-in capture: stands where a honeypot would. Optionally greets, then reads what the
// attacker sends (up to maxBytes, within timeoutMs) and closes.
import type { CaptureOptions } from '../config/types.js';
import type { Flow } from '../gateway/flow.js';
import { isReset } from '../gateway/pump.js';

export function capture(flow: Flow, opts: CaptureOptions): void {
  const down = flow.downstream;
  flow.action = 'capture';
  let got = 0;
  for (const chunk of flow.takePending()) got += chunk.length;
  const timer = setTimeout(() => close('capture-timeout'), opts.timeoutMs);
  timer.unref();
  flow.defer(() => clearTimeout(timer));

  function close(reason: 'capture-done' | 'capture-timeout') {
    flow.closeReason ??= reason;
    // A FIN after the banner, not a reset: the attacker should see an orderly close.
    down.end(() => flow.finish(reason));
    down.pause();
  }

  down.removeAllListeners('error');
  down.on('error', (err: NodeJS.ErrnoException) =>
    flow.finish(isReset(err) ? 'client-reset' : 'error', isReset(err) ? undefined : err.message),
  );
  down.on('close', () => flow.finish('capture-done'));
  if (got >= opts.maxBytes) return close('capture-done');
  down.on('data', (chunk: Buffer) => {
    flow.received(chunk);
    got += chunk.length;
    if (got >= opts.maxBytes) close('capture-done');
  });
  down.on('end', () => close('capture-done'));
  if (opts.banner) down.write(opts.banner);
  down.resume();
}
