/**
 * The deadlines of one session: a binary min-heap of (time, entry) with lazy deletion. A call
 * that ends early is not searched for and removed; its entry is dropped when it reaches the
 * top (peekTime) or handed back and ignored (popDue: the session checks `settled`).
 */

/** What the heap holds: anything with a deadline that can end before it. */
export interface Timed {
  readonly settled: boolean;
}

/** A time that never comes: the deadline of a call without one. */
export const NO_DEADLINE = Infinity;

export class DeadlineHeap<T extends Timed = Timed> {
  private times: number[] = [];
  private items: T[] = [];

  push(time: number, item: T): void {
    const t = this.times;
    const it = this.items;
    let i = t.length;
    t.push(time);
    it.push(item);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (t[p]! <= time) break;
      t[i] = t[p]!;
      it[i] = it[p]!;
      i = p;
    }
    t[i] = time;
    it[i] = item;
  }

  /** Earliest time of an entry not settled yet, or Infinity. */
  peekTime(): number {
    // Skip entries whose call already finished, so an idle session reports no deadline.
    while (this.items.length > 0 && this.items[0]!.settled) this.pop();
    return this.times.length > 0 ? this.times[0]! : Infinity;
  }

  /** The earliest entry if its time is at or before `now`, else null. */
  popDue(now: number): T | null {
    if (this.times.length === 0 || this.times[0]! > now) return null;
    return this.pop();
  }

  clear(): void {
    this.times = [];
    this.items = [];
  }

  private pop(): T {
    const t = this.times;
    const it = this.items;
    const top = it[0]!;
    const lastT = t.pop()!;
    const lastI = it.pop()!;
    const n = t.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && t[c + 1]! < t[c]!) c++;
        if (t[c]! >= lastT) break;
        t[i] = t[c]!;
        it[i] = it[c]!;
        i = c;
      }
      t[i] = lastT;
      it[i] = lastI;
    }
    return top;
  }
}
