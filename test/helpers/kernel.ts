// What the kernel-route e2e files (test/e2e/kernel*.test.ts) share: their skip reason and the
// parts of their configs that are the same, so a change to the shape is made once.
import { needsRoot } from './netns.js';
import { which } from './peers.js';

/** Why a kernel-route e2e file cannot run here (root, nft, then `more`'s reason), or false. */
export function kernelSkip(more: () => string | false = () => false): string | false {
  const root = needsRoot();
  if (root) return root;
  if (!which('nft')) return 'nft not installed (Debian package nftables)';
  return more();
}

/**
 * The `listeners:` block of a tproxy listener `decoys` that diverts `ports` of `addresses` from
 * the farm's two attackers (att1, att2): the flows the kernel routes under test take.
 */
export function decoysListener(addresses: string[], ports: string): string {
  return `listeners:
  - name: decoys
    tproxy: { port: 15001 }
    divert: { interface: [att1, att2], addresses: [${addresses.map((a) => `"${a}"`).join(', ')}], ports: "${ports}" }
`;
}

/** Events into `db` in 50 ms batches (the tests poll the store) and JSON logs (they wait on lines). */
export function storeAndLog(db: string): string {
  return `events: { sqlite: ${db}, batch: 50ms }
log: { format: json }
`;
}
