/**
 * Packet-mark bits that other software sets. Sharing a bit with them misroutes their packets
 * or ours: config warns when firewall.mask overlaps one, and doctor skips them when it
 * suggests a free bit.
 */
export const FOREIGN_MARKS: readonly (readonly [bits: number, who: string])[] = [
  [0x4000, 'kube-proxy (masquerade)'],
  [0x8000, 'kube-proxy (drop)'],
  [0xffff0000, 'Calico'],
  [0x0f00, 'Cilium'],
  [0xca6c, 'wg-quick (fwmark 51820)'],
];

/** Every bit in FOREIGN_MARKS, as one unsigned 32-bit mask. */
export const FOREIGN_MARK_BITS: number = FOREIGN_MARKS.reduce((a, [bits]) => (a | bits) >>> 0, 0);
