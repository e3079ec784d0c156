// Built-in capture: stands where a honeypot would. Optionally greets, then reads what the
// attacker sends (up to maxBytes, within timeoutMs) and closes.

import type { Flow } from '../gateway/flow.js';
import { startRecording } from '../record/flow.js';
import { closeGently } from './close.js';
import type { CaptureOptions } from './definitions/index.js';

export function capture(flow: Flow, opts: CaptureOptions): void {
  const down = flow.downstream;
  flow.action = 'capture';
  startRecording(flow, flow.route?.record);
  const rec = flow.recording;
  let got = 0;
  for (const chunk of flow.takePending()) {
    rec?.in(chunk);
    got += chunk.length;
  }
  const timer = setTimeout(() => close('capture-timeout'), opts.timeoutMs);
  timer.unref();
  flow.defer(() => clearTimeout(timer));

  let closing = false;
  function close(reason: 'capture-done' | 'capture-timeout') {
    if (closing) return;
    closing = true;
    rec?.finOut();
    closeGently(flow, reason);
  }

  down.on('close', () => flow.finish('capture-done'));
  if (got >= opts.maxBytes) return close('capture-done');
  down.on('data', (chunk: Buffer) => {
    flow.received(chunk);
    rec?.in(chunk);
    got += chunk.length;
    if (got >= opts.maxBytes) close('capture-done');
  });
  down.on('end', () => {
    rec?.finIn();
    close('capture-done');
  });
  if (opts.banner) {
    const banner = Buffer.from(opts.banner, 'utf8');
    flow.bytesOut += banner.length;
    rec?.out(banner);
    down.write(banner);
  }
  // An earlier stage (header, peek) may have read the attacker's FIN already.
  if (down.readableEnded) {
    rec?.finIn();
    return close('capture-done');
  }
  down.resume();
}
