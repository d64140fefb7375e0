import type { DeferredEntry } from '../spool/entry-names.js';

/**
 * Deferred entries ordered by due time (a binary min-heap), so finding what is due costs nothing per poll
 * however many messages wait: the index is rebuilt from `deferred/` file names, never from envelopes.
 */
export class DueIndex {
  private heap: DeferredEntry[] = [];

  get size(): number {
    return this.heap.length;
  }

  replaceAll(entries: DeferredEntry[]): void {
    this.heap = [...entries].sort((a, b) => a.due - b.due);
  }

  add(entry: DeferredEntry): void {
    const heap = this.heap;
    heap.push(entry);
    let index = heap.length - 1;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (heap[parent]!.due <= entry.due) break;
      heap[index] = heap[parent]!;
      index = parent;
    }
    heap[index] = entry;
  }

  /** The smallest queue id, i.e. the longest queued message (ids sort by creation time); one pass, for scrapes only. */
  oldestId(): string | undefined {
    let oldest: string | undefined;
    for (const entry of this.heap) if (oldest === undefined || entry.id < oldest) oldest = entry.id;
    return oldest;
  }

  nextDue(): number | undefined {
    return this.heap[0]?.due;
  }

  /** Removes and returns every entry due at or before `now`. */
  takeDue(now: number): DeferredEntry[] {
    const due: DeferredEntry[] = [];
    while (this.heap.length && this.heap[0]!.due <= now) due.push(this.pop());
    return due;
  }

  private pop(): DeferredEntry {
    const heap = this.heap;
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length === 0) return top;
    let index = 0;
    for (;;) {
      const left = 2 * index + 1;
      const right = left + 1;
      let smallest = index;
      const current = () => (smallest === index ? last : heap[smallest]!);
      if (left < heap.length && heap[left]!.due < current().due) smallest = left;
      if (right < heap.length && heap[right]!.due < current().due) smallest = right;
      if (smallest === index) break;
      heap[index] = heap[smallest]!;
      index = smallest;
    }
    heap[index] = last;
    return top;
  }
}
