// Starting a flow's recording, for the actions that copy bytes (forward's pump, capture).
import type { Flow } from '../gateway/flow.js';
import type { RecordOptions } from './config.js';

/** Starts recording `flow` when `opts` asks for it and the store has room; a second call keeps the first recording. */
export function startRecording(flow: Flow, opts: RecordOptions | null | undefined): void {
  const store = flow.runtime.recordings;
  if (!opts || !store || flow.recording) return;
  flow.recording = store.open(
    {
      id: flow.id,
      src: flow.src,
      dst: flow.dst,
      listener: flow.listener.name,
      route: flow.route?.name ?? null,
      action: flow.action,
      backend: flow.backend,
    },
    opts,
  );
}
