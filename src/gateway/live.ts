// The collections that hold every live flow (the open flows, the relay's connections, the
// deadline sweep's records). Not Map or Set: once a Map's or Set's hash table has reached
// V8's old generation, each table it rehashes into is allocated there too, and the table
// it leaves keeps every entry it held reachable until the next full GC. With flows coming
// and going, that kept every finished flow alive through two scavenges, so each one was
// promoted to the old generation. An array whose slots are cleared on removal leaves
// nothing behind.

/** A set of live items, each removed by the slot add() gave it. */
export class Slots<T> {
  private readonly items: (T | undefined)[] = [];
  private readonly free: number[] = []; // the empty slots

  get size(): number {
    return this.items.length - this.free.length;
  }

  add(item: T): number {
    const slot = this.free.length > 0 ? this.free.pop()! : this.items.length;
    this.items[slot] = item;
    return slot;
  }

  /** Removes `item` from `slot`; nothing when the slot holds something else (already removed). */
  remove(slot: number, item: T): void {
    if (this.items[slot] !== item) return;
    this.items[slot] = undefined;
    this.free.push(slot);
  }

  /** A copy of the items: callers may remove while they go through it. */
  values(): T[] {
    const out: T[] = [];
    for (const item of this.items) if (item !== undefined) out.push(item);
    return out;
  }
}

/**
 * Items by their numeric id, for ids handed out in increasing order (the relay's flow ids).
 * An item sits at `id & mask`; one whose place a longer-lived item still holds waits in a
 * small Map, and the array doubles when it is half full.
 */
export class IdTable<T extends { readonly id: number }> {
  private slots: (T | undefined)[] = new Array(1024).fill(undefined);
  private mask = 1023;
  private readonly overflow = new Map<number, T>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(id: number): T | undefined {
    const item = this.slots[id & this.mask];
    if (item !== undefined && item.id === id) return item;
    return this.overflow.size > 0 ? this.overflow.get(id) : undefined;
  }

  /** Adds an item whose id is not in the table. */
  add(item: T): void {
    if (this.count >= this.slots.length / 2) this.grow();
    this.count++;
    this.place(item);
  }

  delete(id: number): void {
    const i = id & this.mask;
    const item = this.slots[i];
    if (item !== undefined && item.id === id) {
      this.slots[i] = undefined;
      this.count--;
    } else if (this.overflow.delete(id)) {
      this.count--;
    }
  }

  values(): T[] {
    const out: T[] = [];
    for (const item of this.slots) if (item !== undefined) out.push(item);
    out.push(...this.overflow.values());
    return out;
  }

  private place(item: T): void {
    const i = item.id & this.mask;
    if (this.slots[i] === undefined) this.slots[i] = item;
    else this.overflow.set(item.id, item);
  }

  private grow(): void {
    const items = this.values();
    this.slots = new Array(this.slots.length * 2).fill(undefined);
    this.mask = this.slots.length - 1;
    this.overflow.clear();
    for (const item of items) this.place(item);
  }
}
