/**
 * A bounded cache of small, rarely changing records (buckets, access keys) read on every request.
 * Records are frozen when cached, so a caller cannot change what the next caller gets.
 *
 * Consistency rests on two rules the owner (MetaStore) follows: every write to the underlying table
 * calls clear() (inside or outside a transaction), and a record read inside a transaction is not
 * cached (the transaction may still roll back). Entries read outside transactions are committed rows,
 * and the store has one connection per process, so nothing else changes them behind the cache.
 */
export class RecordCache<T extends object> {
  private readonly entries = new Map<string, Readonly<T>>();

  constructor(private readonly maxEntries: number) {
    if (!Number.isInteger(maxEntries) || maxEntries <= 0) throw new RangeError(`maxEntries must be a positive integer, got ${maxEntries}`);
  }

  get(key: string): Readonly<T> | undefined {
    return this.entries.get(key);
  }

  /** Freezes the record (deeply) and keeps it; evicts the oldest entry when full. Returns the frozen record. */
  set(key: string, record: T): Readonly<T> {
    const frozen = deepFreeze(record);
    if (!this.entries.has(key) && this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(key, frozen);
    return frozen;
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}

function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v as object)) deepFreeze(x);
  }
  return v;
}
