// The writer thread of ThreadedSqliteSink (sqlite-thread.ts): one SqliteSink, one message
// at a time, each answered. Errors travel as their messages (HG_ERR_SINK on the other side).
import { parentPort, workerData } from 'node:worker_threads';
import { SqliteSink, type SqliteSinkOptions } from './sqlite.js';
import type { FromThread, ToThread } from './sqlite-thread.js';

const port = parentPort!;
const { path, opts } = workerData as { path: string; opts: SqliteSinkOptions };
const reply = (m: FromThread | { type: 'error'; message: string }) => port.postMessage(m);

let sink: SqliteSink | null = null;
try {
  sink = new SqliteSink(path, opts);
  reply({ type: 'ready' });
} catch (err) {
  reply({ type: 'error', message: (err as Error).message });
}

port.on('message', (m: ToThread) => {
  if (!sink) return;
  if (m.type === 'write') {
    try {
      sink.write(m.events);
      reply({ type: 'done', id: m.id });
    } catch (err) {
      reply({ type: 'done', id: m.id, error: (err as Error).message });
    }
  } else if (m.type === 'close') {
    try {
      sink.close();
      reply({ type: 'closed' });
    } catch (err) {
      reply({ type: 'closed', error: (err as Error).message });
    }
    port.close();
  }
});
