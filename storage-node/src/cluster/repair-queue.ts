// The gateway's persistent repair queue: copies a node is owed (a blob, a metadata record, a replacement
// for a corrupt blob), kept in their own sqlite file until they are made. See docs/decisions/0012-repair-queue.md.
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { Migration, runMigrations } from '../meta/schema';
import { CoalescingSync, dirSync } from '../util/fsync';
import { Logger, silentLogger } from '../util/logger';

export type RepairKind = 'blob' | 'meta' | 'corrupt';
const KINDS: readonly string[] = ['blob', 'meta', 'corrupt'] satisfies RepairKind[];

/** A copy that is owed. Identity (for deduplication): kind, target, bucket, key, versionId, blobId. */
export interface RepairItem {
  kind: RepairKind;
  /** The node id that must receive the copy. */
  target: string;
  bucket: string;
  key: string;
  versionId: string;
  /** Required for 'blob' and 'corrupt', absent for 'meta'. */
  blobId?: string;
  partition: number;
  sizeBytes: number;
}

/** An owed item with its bookkeeping, as the executor and list() see it. */
export interface RepairEntry extends RepairItem {
  /** Stable while the item is owed. */
  id: number;
  /** Failed attempts so far. An item skipped because its target was down, or interrupted by stop(), does not count. */
  attempts: number;
  nextAttemptMs: number;
  firstOwedMs: number;
  /** Start of the last failed attempt. */
  lastAttemptMs?: number;
  lastError?: string;
}

/** 'done': the copy is made; 'drop': nothing to make any more (e.g. the version is gone); 'retry': later, with back-off. */
export type RepairOutcome = 'done' | 'retry' | 'drop';
export type RepairExecutor = (item: Readonly<RepairEntry>, signal: AbortSignal) => Promise<RepairOutcome>;

export interface RepairQueueOptions {
  /** Makes one copy; must honour the signal (stop() waits for it). Needed by start() only. */
  execute?: RepairExecutor;
  /** Items whose target is down are not attempted. Default: every target is up. Wire to PeerHealth.isUp. */
  isTargetUp?: (nodeId: string) => boolean;
  /** Executions in flight, all targets together. Default 4. */
  concurrency?: number;
  /** Executions in flight for one target. Default 2. */
  perTargetConcurrency?: number;
  /** Delay after the first failed attempt; doubles with each failure. Default 1000. */
  initialBackoffMs?: number;
  /** Cap on that delay. Default 60000. */
  maxBackoffMs?: number;
  /** Owed items at most; beyond it enqueue() throws RepairQueueFullError. Default 10,000,000. */
  maxItems?: number;
  /** Items in one enqueue() call at most (one transaction on the event loop). Default 10,000. */
  maxEnqueueBatch?: number;
  /** The loop looks again at least this often (a target may come back without a kick()). Default 5000. */
  pollIntervalMs?: number;
  logger?: Logger;
  /** For the back-off jitter; tests pass a constant. Default Math.random. */
  random?: () => number;
}

export interface RepairTargetStats {
  items: number;
  bytes: number;
}

export interface RepairQueueStats {
  owedItems: number;
  owedBytes: number;
  byTarget: { [nodeId: string]: RepairTargetStats };
  /** Copies made (executor said 'done'), since the file was created. */
  madeTotal: number;
  /** Items removed without a copy: the executor said 'drop', or forgetTarget/forgetVersion removed them. */
  droppedTotal: number;
  /** Attempts that returned 'retry' or threw. */
  failedAttemptsTotal: number;
  /** Epoch ms at which the oldest item still owed was enqueued. */
  oldestOwedMs?: number;
  lastMadeMs?: number;
}

/** The queue holds its maximum: the write that wanted to owe a copy cannot be acknowledged (503). */
export class RepairQueueFullError extends Error {
  constructor(readonly owedItems: number, readonly newItems: number, readonly maxItems: number) {
    super(
      `repair queue is full: ${owedItems} copies are owed and ${newItems} more would pass the maximum of ${maxItems}; ` +
        'writes that cannot place every copy are refused until repair catches up',
    );
    this.name = 'RepairQueueFullError';
  }
}

/** Delay before the next attempt after `attempts` failures: initial·2^(attempts−1), capped, minus up to half of it (jitter). */
export function backoffDelayMs(attempts: number, initialBackoffMs: number, maxBackoffMs: number, random: () => number = Math.random): number {
  check(Number.isSafeInteger(attempts) && attempts >= 1, 'attempts is a positive integer');
  const cappedMs = Math.min(maxBackoffMs, initialBackoffMs * 2 ** Math.min(attempts - 1, 52));
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.max(1, Math.round(cappedMs * (1 - 0.5 * r)));
}

const MAX_NAME_CHARS = 1024;
const MAX_ERROR_CHARS = 1000;
const JOURNAL_SIZE_LIMIT_BYTES = 16 * 1024 * 1024;
/** forgetTarget() deletes this many rows per transaction, yielding the event loop in between. */
const FORGET_CHUNK = 10_000;
const LIST_PAGE = 500;
const MAX_LIST_LIMIT = 1_000_000;

/**
 * Version 1. blob_id is '' for a 'meta' item so that the unique identity index works (NULLs never conflict).
 * The identity index starts with (bucket, key, version_id) so that it also serves forgetVersion. `gen` moves
 * when an item is enqueued again while an attempt runs: that attempt then does not remove it.
 */
const V1 = `
CREATE TABLE items (
  id INTEGER PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('blob', 'meta', 'corrupt')),
  target TEXT NOT NULL,
  bucket TEXT NOT NULL,
  key TEXT NOT NULL,
  version_id TEXT NOT NULL,
  blob_id TEXT NOT NULL,
  partition INTEGER NOT NULL CHECK (partition >= 0),
  size_bytes INTEGER NOT NULL CHECK (size_bytes >= 0),
  attempts INTEGER NOT NULL CHECK (attempts >= 0),
  next_attempt_ms INTEGER NOT NULL,
  first_owed_ms INTEGER NOT NULL,
  last_attempt_ms INTEGER,
  last_error TEXT,
  gen INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE UNIQUE INDEX items_identity ON items (bucket, key, version_id, blob_id, kind, target);
CREATE INDEX items_due ON items (target, next_attempt_ms, id);
CREATE INDEX items_kickable ON items (target, last_attempt_ms, id) WHERE last_attempt_ms IS NOT NULL;
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;
INSERT INTO counters (name, value) VALUES ('madeTotal', 0), ('droppedTotal', 0), ('failedAttemptsTotal', 0), ('lastMadeMs', 0);
`;
const MIGRATIONS: readonly Migration[] = [{ to: 1, sql: V1 }];

interface ItemRow {
  id: number;
  kind: string;
  target: string;
  bucket: string;
  key: string;
  version_id: string;
  blob_id: string;
  partition: number;
  size_bytes: number;
  attempts: number;
  next_attempt_ms: number;
  first_owed_ms: number;
  last_attempt_ms: number | null;
  last_error: string | null;
  gen: number;
}

interface Running {
  entry: RepairEntry;
  gen: number;
  startedMs: number;
  controller: AbortController;
  /** Set when we aborted it: the outcome is then not a failed attempt. */
  abortReason?: 'stop' | 'forgotten';
  done: Promise<void>;
}

type CounterName = 'madeTotal' | 'droppedTotal' | 'failedAttemptsTotal' | 'lastMadeMs';

const SQL = {
  find: 'SELECT id FROM items WHERE bucket = ? AND key = ? AND version_id = ? AND blob_id = ? AND kind = ? AND target = ?',
  insert:
    'INSERT INTO items (kind, target, bucket, key, version_id, blob_id, partition, size_bytes, attempts, next_attempt_ms, first_owed_ms) ' +
    'VALUES (@kind, @target, @bucket, @key, @version_id, @blob_id, @partition, @size_bytes, 0, @now, @now)',
  bumpGen: 'UPDATE items SET gen = gen + 1 WHERE id = ?',
  /** Due order for one target; the caller skips the rows in flight, so the limit counts them. */
  due: 'SELECT * FROM items WHERE target = ? ORDER BY next_attempt_ms, id LIMIT ?',
  /** Items attempted (and failed) before a kick: due at once whatever their back-off says. */
  kickable: 'SELECT * FROM items WHERE target = ? AND last_attempt_ms IS NOT NULL AND last_attempt_ms < ? ORDER BY last_attempt_ms, id LIMIT ?',
  removeIfGen: 'DELETE FROM items WHERE id = ? AND gen = ?',
  /** Enqueued again while an attempt ran: owed once more, due now. */
  reowe: 'UPDATE items SET attempts = 0, next_attempt_ms = ?, last_error = NULL WHERE id = ?',
  retry: 'UPDATE items SET attempts = attempts + 1, next_attempt_ms = ?, last_attempt_ms = ?, last_error = ? WHERE id = ?',
  forgetTargetChunk: 'DELETE FROM items WHERE id IN (SELECT id FROM items WHERE target = ? LIMIT ?) RETURNING target, size_bytes',
  forgetVersion: 'DELETE FROM items WHERE bucket = ? AND key = ? AND version_id = ? RETURNING target, size_bytes',
  addCounter: 'UPDATE counters SET value = value + ? WHERE name = ?',
  setCounter: 'UPDATE counters SET value = ? WHERE name = ?',
  counters: 'SELECT name, value FROM counters',
  byTarget: 'SELECT target, count(*) AS items, total(size_bytes) AS bytes FROM items GROUP BY target',
  /** Ids grow with time, so the smallest id is the oldest item (unless the clock went back). */
  oldest: 'SELECT first_owed_ms FROM items ORDER BY id LIMIT 1',
  listAll: 'SELECT * FROM items WHERE id > ? ORDER BY id LIMIT ?',
  listTarget: 'SELECT * FROM items WHERE target = ? AND (next_attempt_ms, id) > (?, ?) ORDER BY next_attempt_ms, id LIMIT ?',
  touchOpened: "INSERT INTO meta (k, v) VALUES ('lastOpenedMs', ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
} as const;

/**
 * Owed copies in one sqlite file (WAL, synchronous=NORMAL, group-committed fsync of the WAL, as in the
 * metadata store: docs/decisions/0001). enqueue() is synchronous and atomic; the items are durable once a
 * later sync() resolves. A worker loop (start/stop) hands due items to an executor with bounded concurrency
 * (globally and per target), removes what is made or dropped and retries the rest with exponential back-off.
 */
export class RepairQueue {
  private readonly stmts = new Map<keyof typeof SQL, Database.Statement>();
  private readonly log: Logger;
  private readonly execute: RepairExecutor | undefined;
  private readonly isTargetUp: (nodeId: string) => boolean;
  private readonly concurrency: number;
  private readonly perTargetConcurrency: number;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly maxItems: number;
  private readonly maxEnqueueBatch: number;
  private readonly pollIntervalMs: number;
  private readonly random: () => number;

  // In-memory accounting, recomputed from the file at open and kept in step with every transaction.
  private owedItems = 0;
  private owedBytes = 0;
  private readonly byTarget = new Map<string, RepairTargetStats>();
  private readonly counters: Record<CounterName, number> = { madeTotal: 0, droppedTotal: 0, failedAttemptsTotal: 0, lastMadeMs: 0 };
  private oldestOwedMs: number | undefined;
  private oldestStale = true;

  // The worker.
  private started = false;
  private readonly running = new Map<number, Running>();
  private readonly runningPerTarget = new Map<string, number>();
  private readonly kickedAtMs = new Map<string, number>();
  private fillPending = false;
  private timer: NodeJS.Timeout | undefined;
  private rotation = 0;
  /** No new work (enqueue, start) after close() began. */
  private closing = false;
  /** The database is closed. */
  private closed = false;

  private constructor(private readonly db: Database.Database, private readonly walSync: CoalescingSync, readonly file: string, o: RepairQueueOptions) {
    this.log = o.logger ?? silentLogger();
    this.execute = o.execute;
    this.isTargetUp = o.isTargetUp ?? (() => true);
    this.concurrency = o.concurrency ?? 4;
    this.perTargetConcurrency = o.perTargetConcurrency ?? 2;
    this.initialBackoffMs = o.initialBackoffMs ?? 1000;
    this.maxBackoffMs = o.maxBackoffMs ?? 60_000;
    this.maxItems = o.maxItems ?? 10_000_000;
    this.maxEnqueueBatch = o.maxEnqueueBatch ?? 10_000;
    this.pollIntervalMs = o.pollIntervalMs ?? 5000;
    this.random = o.random ?? Math.random;
    for (const [name, v] of [['concurrency', this.concurrency], ['perTargetConcurrency', this.perTargetConcurrency], ['maxItems', this.maxItems],
      ['maxEnqueueBatch', this.maxEnqueueBatch], ['initialBackoffMs', this.initialBackoffMs], ['pollIntervalMs', this.pollIntervalMs]] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`repair queue option ${name} must be a positive integer, got ${v}`);
    }
    if (!Number.isSafeInteger(this.maxBackoffMs) || this.maxBackoffMs < this.initialBackoffMs) {
      throw new RangeError(`repair queue option maxBackoffMs must be an integer >= initialBackoffMs, got ${this.maxBackoffMs}`);
    }
    this.loadAccounting();
  }

  /** Opens (or creates) the queue file; its folder must exist. Resolves once the file and its WAL are durable. */
  static async open(file: string, opts: RepairQueueOptions = {}): Promise<RepairQueue> {
    const log = opts.logger ?? silentLogger();
    const dir = path.dirname(path.resolve(file));
    if (!fs.existsSync(dir)) throw new Error(`repair queue folder ${dir} does not exist`);
    const db = new Database(file);
    let walSync: CoalescingSync | undefined;
    try {
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (mode !== 'wal') throw new Error(`repair queue ${file} cannot use WAL mode (got ${String(mode)})`);
      // NORMAL: a commit does not fsync (that would block the event loop); sync() makes commits durable.
      db.pragma('synchronous = NORMAL');
      db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT_BYTES}`);
      try {
        runMigrations(db, MIGRATIONS, log);
      } catch (e) {
        throw new Error(`repair queue ${file}: ${errorMessage(e)}`);
      }
      // A write at every open guarantees the -wal file exists before we fsync it and keep an fd on it.
      db.prepare(SQL.touchOpened).run(String(Date.now()));
      const wal = `${file}-wal`;
      if (!fs.existsSync(wal)) throw new Error(`repair queue ${file} has no WAL file after a write`);
      walSync = new CoalescingSync(wal);
      // The schema and the WAL's directory entry are durable before anything is enqueued.
      await walSync.sync();
      await dirSync(dir);
      const q = new RepairQueue(db, walSync, file, opts);
      log.info('repair queue opened', { file, owedItems: q.owedItems, owedBytes: q.owedBytes, targets: q.byTarget.size });
      return q;
    } catch (e) {
      await walSync?.close().catch(() => undefined);
      db.close();
      throw e;
    }
  }

  // ---- owing -------------------------------------------------------------------------------------

  /**
   * Records the items in one transaction; returns how many were new (an item already owed is not added
   * twice). Durable only after a later sync() resolves. Throws RepairQueueFullError (and adds nothing) if
   * the new items would pass maxItems.
   */
  enqueue(items: readonly RepairItem[]): number {
    this.assertOpen();
    if (items.length > this.maxEnqueueBatch) throw new RangeError(`at most ${this.maxEnqueueBatch} repair items per enqueue, got ${items.length}`);
    items.forEach(checkItem);
    const nowMs = Date.now();
    const added: RepairItem[] = [];
    let reowed = 0;
    this.db.transaction(() => {
      for (const it of items) {
        const blobId = it.blobId ?? '';
        const existing = this.stmt('find').get(it.bucket, it.key, it.versionId, blobId, it.kind, it.target) as { id: number } | undefined;
        if (existing !== undefined) {
          // An attempt in flight may have read the state before this change: make it not remove the item.
          if (this.running.has(existing.id)) {
            this.stmt('bumpGen').run(existing.id);
            reowed++;
          }
          continue;
        }
        this.stmt('insert').run({
          kind: it.kind, target: it.target, bucket: it.bucket, key: it.key, version_id: it.versionId, blob_id: blobId,
          partition: it.partition, size_bytes: it.sizeBytes, now: nowMs,
        });
        added.push(it);
      }
      // Checked after the batch (at most maxEnqueueBatch rows to roll back) so that the message says how many.
      if (this.owedItems + added.length > this.maxItems) throw new RepairQueueFullError(this.owedItems, added.length, this.maxItems);
    })();
    for (const it of added) this.account(it.target, 1, it.sizeBytes);
    if (added.length > 0 && this.oldestOwedMs === undefined && !this.oldestStale) this.oldestOwedMs = nowMs;
    if (added.length > 0 || reowed > 0) {
      this.log.debug('repair items enqueued', { added: added.length, duplicates: items.length - added.length, reowed, owedItems: this.owedItems });
      this.scheduleFill();
    }
    return added.length;
  }

  /** Resolves once every enqueue committed before the call is on stable storage (one fsync of the WAL, shared). */
  sync(): Promise<void> {
    if (this.closed) return Promise.reject(new Error('repair queue is closed'));
    return this.walSync.sync();
  }

  /** Removes every item owed to a node that left the layout (in chunks, yielding between them); aborts its attempts. */
  async forgetTarget(nodeId: string): Promise<number> {
    this.assertOpen();
    checkName('target', nodeId);
    this.abortRunning((r) => r.entry.target === nodeId, 'forgotten');
    this.kickedAtMs.delete(nodeId);
    let removed = 0;
    for (;;) {
      if (this.closed) break;
      const n = this.forgetRows(this.stmt('forgetTargetChunk'), [nodeId, FORGET_CHUNK]);
      removed += n;
      if (n < FORGET_CHUNK) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
    this.log.info('repair items forgotten', { reason: 'target left the layout', target: nodeId, items: removed });
    return removed;
  }

  /** Removes every item of a version that was deleted (nothing to repair any more); aborts its attempts. */
  forgetVersion(bucket: string, key: string, versionId: string): number {
    this.assertOpen();
    checkName('bucket', bucket);
    checkName('key', key);
    checkName('versionId', versionId);
    this.abortRunning((r) => r.entry.bucket === bucket && r.entry.key === key && r.entry.versionId === versionId, 'forgotten');
    const removed = this.forgetRows(this.stmt('forgetVersion'), [bucket, key, versionId]);
    if (removed > 0) this.log.info('repair items forgotten', { reason: 'version deleted', bucket, key, versionId, items: removed });
    return removed;
  }

  // ---- reading -----------------------------------------------------------------------------------

  /** From memory, except the oldest item: one primary-key lookup after removals. */
  stats(): RepairQueueStats {
    if (this.oldestStale && !this.closed) {
      const row = this.stmt('oldest').get() as { first_owed_ms: number } | undefined;
      this.oldestOwedMs = row?.first_owed_ms;
      this.oldestStale = false;
    }
    const byTarget: RepairQueueStats['byTarget'] = {};
    for (const [t, s] of this.byTarget) byTarget[t] = { ...s };
    return {
      owedItems: this.owedItems,
      owedBytes: this.owedBytes,
      byTarget,
      madeTotal: this.counters.madeTotal,
      droppedTotal: this.counters.droppedTotal,
      failedAttemptsTotal: this.counters.failedAttemptsTotal,
      ...(this.oldestOwedMs !== undefined && { oldestOwedMs: this.oldestOwedMs }),
      ...(this.counters.lastMadeMs > 0 && { lastMadeMs: this.counters.lastMadeMs }),
    };
  }

  pendingFor(target: string): RepairTargetStats {
    const s = this.byTarget.get(target);
    return { items: s?.items ?? 0, bytes: s?.bytes ?? 0 };
  }

  /**
   * For debugging: the items owed to `target` in due order, or all items in enqueue order; at most `limit`.
   * Read page by page, so it is not a snapshot: items retried meanwhile may be skipped or seen twice.
   */
  async *list(q: { target?: string; limit: number }): AsyncGenerator<RepairEntry> {
    if (!Number.isSafeInteger(q.limit) || q.limit < 0 || q.limit > MAX_LIST_LIMIT) throw new RangeError(`list limit must be an integer from 0 to ${MAX_LIST_LIMIT}`);
    let afterId = 0;
    let afterNextMs = -Infinity;
    let listed = 0;
    while (listed < q.limit && !this.closed) {
      const page = Math.min(LIST_PAGE, q.limit - listed);
      const rows = (q.target === undefined
        ? this.stmt('listAll').all(afterId, page)
        : this.stmt('listTarget').all(q.target, afterNextMs, afterId, page)) as ItemRow[];
      for (const r of rows) {
        listed++;
        yield decodeRow(r);
      }
      if (rows.length < page) return;
      const last = rows[rows.length - 1];
      afterId = last.id;
      afterNextMs = last.next_attempt_ms;
    }
  }

  // ---- the worker --------------------------------------------------------------------------------

  /** Starts handing due items to the executor. */
  start(): void {
    this.assertOpen();
    if (this.execute === undefined) throw new Error('repair queue has no executor: pass options.execute to start the worker');
    if (this.started) return;
    this.started = true;
    this.log.info('repair worker started', { concurrency: this.concurrency, perTargetConcurrency: this.perTargetConcurrency, owedItems: this.owedItems });
    this.scheduleFill();
  }

  /** Starts no more attempts, aborts the running ones and resolves once they have all settled. */
  async stop(): Promise<void> {
    if (this.started) {
      this.started = false;
      if (this.timer !== undefined) clearTimeout(this.timer);
      this.timer = undefined;
      this.log.info('repair worker stopping', { running: this.running.size });
    }
    this.abortRunning(() => true, 'stop');
    await Promise.all([...this.running.values()].map((r) => r.done));
  }

  /**
   * Wakes the loop at once. The items of `target` (of every target if none is named) that failed before
   * this call are due now, whatever their back-off: call it when a peer comes back up.
   */
  kick(target?: string): void {
    const nowMs = Date.now();
    const targets = target === undefined ? [...this.byTarget.keys()] : this.byTarget.has(target) ? [target] : [];
    for (const t of targets) this.kickedAtMs.set(t, nowMs);
    this.scheduleFill();
  }

  /** stop(), then closes the file. Items enqueued but not yet synced are kept (closing checkpoints the WAL). */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    await this.stop();
    this.closed = true;
    await this.walSync.close().catch(() => undefined);
    this.db.close();
    this.log.info('repair queue closed', { file: this.file, owedItems: this.owedItems });
  }

  private scheduleFill(): void {
    if (!this.started || this.fillPending) return;
    this.fillPending = true;
    setImmediate(() => {
      this.fillPending = false;
      this.fill();
    });
  }

  /** Starts as many due items as the bounds allow, targets taken in turn; arms the timer for the next due one. */
  private fill(): void {
    if (!this.started || this.closed) return;
    const nowMs = Date.now();
    let wakeAtMs = nowMs + this.pollIntervalMs;
    const targets = [...this.byTarget.keys()];
    const first = targets.length === 0 ? 0 : this.rotation++ % targets.length;
    for (let i = 0; i < targets.length && this.running.size < this.concurrency; i++) {
      const dueMs = this.fillTarget(targets[(first + i) % targets.length], nowMs);
      if (dueMs !== undefined) wakeAtMs = Math.min(wakeAtMs, dueMs);
    }
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.scheduleFill();
    }, Math.max(0, wakeAtMs - nowMs));
    // The worker alone does not keep a process alive.
    this.timer.unref();
  }

  /** Returns when the target's next item falls due, if that is what it now waits for. */
  private fillTarget(target: string, nowMs: number): number | undefined {
    const inFlight = this.runningPerTarget.get(target) ?? 0;
    const free = Math.min(this.perTargetConcurrency - inFlight, this.concurrency - this.running.size);
    // Full: a completion wakes the loop. Down: a kick() or the poll does.
    if (free <= 0 || !this.targetUp(target)) return undefined;
    const limit = free + inFlight;
    const picked = new Map<number, ItemRow>();
    let nextDueMs: number | undefined;
    for (const r of this.stmt('due').all(target, limit) as ItemRow[]) {
      if (this.running.has(r.id)) continue;
      if (r.next_attempt_ms > nowMs) {
        nextDueMs = r.next_attempt_ms;
        break;
      }
      picked.set(r.id, r);
    }
    const kickMs = this.kickedAtMs.get(target);
    if (kickMs !== undefined && picked.size < free) {
      const kicked = this.stmt('kickable').all(target, kickMs, limit) as ItemRow[];
      for (const r of kicked) if (!this.running.has(r.id)) picked.set(r.id, r);
      // Every item the kick concerns is now running or about to: the kick is spent.
      if (kicked.length < limit && picked.size <= free) this.kickedAtMs.delete(target);
    }
    let started = 0;
    for (const r of picked.values()) {
      if (started++ >= free) break;
      this.launch(r, nowMs);
    }
    return nextDueMs;
  }

  private targetUp(target: string): boolean {
    try {
      return this.isTargetUp(target);
    } catch (e) {
      this.log.warn('repair target health check failed', { target, error: errorMessage(e) });
      return false;
    }
  }

  private launch(row: ItemRow, nowMs: number): void {
    const r: Running = { entry: decodeRow(row), gen: row.gen, startedMs: nowMs, controller: new AbortController(), done: Promise.resolve() };
    this.running.set(row.id, r);
    this.runningPerTarget.set(row.target, (this.runningPerTarget.get(row.target) ?? 0) + 1);
    r.done = this.attempt(r);
  }

  private async attempt(r: Running): Promise<void> {
    const execute = this.execute;
    check(execute !== undefined, 'the worker runs only with an executor');
    let outcome: RepairOutcome = 'retry';
    let error: string | undefined;
    try {
      const res: unknown = await execute(Object.freeze({ ...r.entry }), r.controller.signal);
      if (res === 'done' || res === 'retry' || res === 'drop') outcome = res;
      else error = `executor returned ${JSON.stringify(res)}`;
    } catch (e) {
      error = errorMessage(e);
    }
    this.running.delete(r.entry.id);
    const left = (this.runningPerTarget.get(r.entry.target) ?? 1) - 1;
    if (left > 0) this.runningPerTarget.set(r.entry.target, left);
    else this.runningPerTarget.delete(r.entry.target);
    try {
      if (!this.closed) this.settle(r, outcome, error);
    } catch (e) {
      // The item stays as it was in the file: it is attempted again, which a copy tolerates.
      this.log.error('repair outcome not recorded', { ...logFields(r.entry), outcome, error: errorMessage(e) });
    }
    this.scheduleFill();
  }

  private settle(r: Running, outcome: RepairOutcome, error: string | undefined): void {
    const e = r.entry;
    const nowMs = Date.now();
    if (outcome === 'retry' && r.abortReason !== undefined) {
      // We interrupted it: not the target's fault, so no back-off and no failed attempt.
      this.log.debug('repair attempt interrupted', { ...logFields(e), reason: r.abortReason });
      return;
    }
    if (outcome === 'retry') {
      const delayMs = backoffDelayMs(e.attempts + 1, this.initialBackoffMs, this.maxBackoffMs, this.random);
      const message = (error ?? 'executor asked for a retry').slice(0, MAX_ERROR_CHARS);
      const changed = this.db.transaction(() => {
        const n = this.stmt('retry').run(nowMs + delayMs, r.startedMs, message, e.id).changes;
        if (n === 1) this.stmt('addCounter').run(1, 'failedAttemptsTotal');
        return n === 1;
      })();
      if (!changed) return; // forgotten meanwhile
      this.counters.failedAttemptsTotal++;
      this.log.warn('repair attempt failed', { ...logFields(e), attempts: e.attempts + 1, retryInMs: delayMs, error: message });
      return;
    }
    const counter: CounterName = outcome === 'done' ? 'madeTotal' : 'droppedTotal';
    const result = this.db.transaction(() => {
      const removed = this.stmt('removeIfGen').run(e.id, r.gen).changes === 1;
      // Not removed: enqueued again during the attempt (owed once more, due now), or forgotten meanwhile.
      const reowed = !removed && this.stmt('reowe').run(nowMs, e.id).changes === 1;
      if (removed || outcome === 'done') this.stmt('addCounter').run(1, counter);
      if (outcome === 'done') this.stmt('setCounter').run(nowMs, 'lastMadeMs');
      return { removed, reowed };
    })();
    if (result.removed || outcome === 'done') this.counters[counter]++;
    if (outcome === 'done') this.counters.lastMadeMs = nowMs;
    if (result.removed) this.unaccount(e.target, 1, e.sizeBytes);
    if (outcome === 'done') this.log.debug('repair copy made', { ...logFields(e), attempts: e.attempts, stillOwed: result.reowed });
    else this.log.info('repair item dropped', { ...logFields(e), attempts: e.attempts, stillOwed: result.reowed });
  }

  private abortRunning(match: (r: Running) => boolean, reason: 'stop' | 'forgotten'): void {
    for (const r of this.running.values()) {
      if (!match(r) || r.controller.signal.aborted) continue;
      r.abortReason = reason;
      r.controller.abort(new Error(reason === 'stop' ? 'repair queue stopping' : 'repair item forgotten'));
    }
  }

  // ---- accounting --------------------------------------------------------------------------------

  private loadAccounting(): void {
    for (const r of this.stmt('byTarget').all() as { target: string; items: number; bytes: number }[]) this.account(r.target, r.items, r.bytes);
    for (const r of this.stmt('counters').all() as { name: string; value: number }[]) {
      check(r.name in this.counters && Number.isSafeInteger(r.value) && r.value >= 0, `counter ${r.name} is a known non-negative integer`);
      this.counters[r.name as CounterName] = r.value;
    }
    this.oldestStale = true;
  }

  private forgetRows(stmt: Database.Statement, args: unknown[]): number {
    const rows = this.db.transaction(() => {
      const removed = stmt.all(...args) as { target: string; size_bytes: number }[];
      if (removed.length > 0) this.stmt('addCounter').run(removed.length, 'droppedTotal');
      return removed;
    })();
    for (const r of rows) this.unaccount(r.target, 1, r.size_bytes);
    this.counters.droppedTotal += rows.length;
    return rows.length;
  }

  private account(target: string, items: number, bytes: number): void {
    const s = this.byTarget.get(target) ?? { items: 0, bytes: 0 };
    s.items += items;
    s.bytes += bytes;
    this.byTarget.set(target, s);
    this.owedItems += items;
    this.owedBytes += bytes;
  }

  private unaccount(target: string, items: number, bytes: number): void {
    const s = this.byTarget.get(target);
    check(s !== undefined && s.items >= items && s.bytes >= bytes && this.owedItems >= items, `accounting of ${target} covers what is removed`);
    s.items -= items;
    s.bytes -= bytes;
    this.owedItems -= items;
    this.owedBytes -= bytes;
    if (s.items === 0) {
      check(s.bytes === 0, `no bytes owed to ${target} once no item is`);
      this.byTarget.delete(target);
      this.kickedAtMs.delete(target);
    }
    this.oldestStale = true;
  }

  private stmt(name: keyof typeof SQL): Database.Statement {
    let s = this.stmts.get(name);
    if (s === undefined) {
      s = this.db.prepare(SQL[name]);
      this.stmts.set(name, s);
    }
    return s;
  }

  private assertOpen(): void {
    if (this.closing) throw new Error('repair queue is closed');
  }
}

function checkName(field: string, v: unknown): void {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_NAME_CHARS) {
    throw new TypeError(`repair item ${field} must be a non-empty string of at most ${MAX_NAME_CHARS} chars`);
  }
}

function checkItem(it: RepairItem): void {
  if (!KINDS.includes(it.kind)) throw new TypeError(`repair item kind must be one of ${KINDS.join(', ')}, got ${JSON.stringify(it.kind)}`);
  checkName('target', it.target);
  checkName('bucket', it.bucket);
  checkName('key', it.key);
  checkName('versionId', it.versionId);
  if (it.kind === 'meta') {
    if (it.blobId !== undefined) throw new TypeError('a meta repair item has no blobId');
  } else {
    checkName('blobId', it.blobId);
  }
  if (!Number.isSafeInteger(it.partition) || it.partition < 0) throw new TypeError('repair item partition must be a non-negative integer');
  if (!Number.isSafeInteger(it.sizeBytes) || it.sizeBytes < 0) throw new TypeError('repair item sizeBytes must be a non-negative integer');
}

function decodeRow(r: ItemRow): RepairEntry {
  check(KINDS.includes(r.kind), `stored kind ${r.kind} is known`);
  check(Number.isSafeInteger(r.attempts) && r.attempts >= 0 && Number.isSafeInteger(r.size_bytes) && r.size_bytes >= 0, 'stored counts are non-negative integers');
  check((r.kind === 'meta') === (r.blob_id === ''), 'a stored item has a blob id unless it is a meta item');
  return {
    id: r.id,
    kind: r.kind as RepairKind,
    target: r.target,
    bucket: r.bucket,
    key: r.key,
    versionId: r.version_id,
    ...(r.blob_id !== '' && { blobId: r.blob_id }),
    partition: r.partition,
    sizeBytes: r.size_bytes,
    attempts: r.attempts,
    nextAttemptMs: r.next_attempt_ms,
    firstOwedMs: r.first_owed_ms,
    ...(r.last_attempt_ms !== null && { lastAttemptMs: r.last_attempt_ms }),
    ...(r.last_error !== null && { lastError: r.last_error }),
  };
}

function logFields(e: RepairEntry): Record<string, unknown> {
  return { kind: e.kind, target: e.target, bucket: e.bucket, key: e.key, versionId: e.versionId, blobId: e.blobId, itemId: e.id };
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function check(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(`repair queue invariant violated: ${msg}`);
}
