// Summarizes a V8 .cpuprofile (node --cpu-prof) as the functions with the most self time.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

export function topSelfTime(profileDir, root, limit = 15) {
  const file = readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no .cpuprofile in ${profileDir}`);
  const prof = JSON.parse(readFileSync(join(profileDir, file), 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const selfUs = new Map();
  for (let i = 0; i < prof.samples.length; i++) {
    const node = byId.get(prof.samples[i]);
    const cf = node.callFrame;
    const url = cf.url.startsWith('file://') ? relative(root, new URL(cf.url).pathname) : cf.url;
    const where = url ? `${url}:${cf.lineNumber + 1}` : '';
    const key = `${cf.functionName || '(anonymous)'}\u0000${where}`;
    selfUs.set(key, (selfUs.get(key) ?? 0) + (prof.timeDeltas[i] ?? 0));
  }
  let total = 0;
  for (const us of selfUs.values()) total += us;
  const idle = [...selfUs].filter(([k]) => k.startsWith('(idle)')).reduce((a, [, us]) => a + us, 0);
  const busy = total - idle;
  const top = [...selfUs]
    .filter(([k]) => !k.startsWith('(idle)'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([k, us]) => {
      const [name, where] = k.split('\u0000');
      return { name, where, ms: us / 1000, percent: (100 * us) / busy };
    });
  return { totalMs: total / 1000, idleMs: idle / 1000, top };
}
