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

  let closing = false;
  function close(reason: 'capture-done' | 'capture-timeout') {
    if (closing) return;
    closing = true;
    flow.closeReason ??= reason;
    // A FIN after the banner, not a reset: the attacker should see an orderly close. An
    // attacker who never reads could hold the end back forever, so it gets a deadline.
    down.pause();
    down.end(() => flow.finish(reason));
    setTimeout(() => flow.finish(reason), 2000).unref();
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
  if (opts.banner) {
    const banner = Buffer.from(opts.banner, 'utf8');
    flow.bytesOut += banner.length;
    down.write(banner);
  }
  down.resume();
}
