/**
 * A per-key work queue with its own workers, as client-go's rate-limited work queue and Pepr's
 * per-object queue do it:
 *
 * - a key (`namespace/name` of one kind) is never handled twice at once: an add while it runs
 *   marks it dirty, and it runs once more after the current run;
 * - a key waiting in the queue is there once, however many adds it gets;
 * - a failed run is retried after a per-key exponential back-off (base × 2^(failures-1), up to
 *   max), never sooner than an overall token bucket allows; success forgets the failures;
 * - a handler may ask to run again later (`requeueAfterMs`), for state that is polled;
 * - the number of distinct keys is capped: an add past the cap is refused and reported, never
 *   queued silently (the next resync brings the key back);
 * - a fixed number of workers; `shutdown` stops taking keys, drops what waits and waits, bounded,
 *   for the runs in flight (their AbortSignal tells them to stop early when asked).
 */
import { Clock, TimerHandle, systemClock } from './clock';

export interface RateLimit {
  /** Retries allowed per second over all keys, on average. */
  perSecond: number;
  /** Retries allowed at once before the average applies. */
  burst: number;
}

export interface WorkQueueOptions {
  /** For messages and metrics, e.g. the kind. */
  name: string;
  workers: number;
  /** Cap on distinct keys (waiting, delayed and running together). */
  maxKeys: number;
  /** First retry delay after a failure. */
  baseDelayMs: number;
  /** Ceiling of the per-key back-off. */
  maxDelayMs: number;
  rateLimit: RateLimit;
  /** A run still going after this long has its signal aborted (it keeps its key until it settles). */
  runTimeoutMs?: number;
  clock?: Clock;
  observer?: WorkQueueObserver;
}

export const DEFAULT_QUEUE_OPTIONS: Omit<WorkQueueOptions, 'name'> = {
  workers: 2,
  maxKeys: 10_000,
  baseDelayMs: 1_000,
  maxDelayMs: 300_000,
  rateLimit: { perSecond: 10, burst: 100 },
  runTimeoutMs: 300_000,
};

/** What a handler may return: nothing (done), or when to look again. */
export interface HandlerResult {
  requeueAfterMs?: number;
}

export type Handler = (key: string, signal: AbortSignal) => Promise<HandlerResult | void>;

export type RunOutcome = 'success' | 'requeue' | 'error';

export interface RunReport {
  key: string;
  outcome: RunOutcome;
  durationMs: number;
  error?: unknown;
  /** Consecutive failures of the key, this one included (0 after a success). */
  failures: number;
  /** When the key runs again (retry or requeue), if it does. */
  nextRunInMs?: number;
}

export interface WorkQueueObserver {
  /** After every run. */
  runDone?(report: RunReport): void;
  /** An add refused: the cap on distinct keys is reached. */
  rejected?(key: string, error: QueueFullError): void;
}

/** The add that would have made more than `maxKeys` distinct keys. */
export class QueueFullError extends Error {
  constructor(
    readonly queue: string,
    readonly key: string,
    readonly maxKeys: number,
  ) {
    super(`work queue ${queue} is full (${maxKeys} distinct keys): ${key} was not queued; it comes back with the next resync`);
    this.name = 'QueueFullError';
  }
}

export type AddResult =
  /** Now waiting to run. */
  | 'queued'
  /** Already waiting (or will run sooner): nothing changed. */
  | 'merged'
  /** Running now: it runs once more afterwards. */
  | 'dirty'
  /** Scheduled for later. */
  | 'delayed'
  /** Refused: too many distinct keys. */
  | 'full'
  /** Refused: the queue is shutting down. */
  | 'shutdown';

export interface WorkQueueStats {
  /** Keys waiting for a worker. */
  depth: number;
  /** Keys waiting for a back-off or requeue delay. */
  delayed: number;
  /** Keys being handled. */
  running: number;
  /** Distinct keys (the cap applies to this). */
  keys: number;
  retriesTotal: number;
  rejectedTotal: number;
  /** Age of the oldest run in flight, 0 if none. */
  longestRunningMs: number;
}

/** Keys are `namespace/name` (or `name`): bounded so that a bad key cannot grow the queue's memory. */
export const MAX_KEY_LENGTH = 512;

/**
 * A token bucket that hands out reservations: each call takes one token, possibly from the future,
 * and says how long to wait for it (x/time/rate's Reserve).
 */
export class TokenBucket {
  private tokens: number;
  private lastMs: number;

  constructor(
    private readonly limit: RateLimit,
    private readonly clock: Clock,
  ) {
    if (!(limit.perSecond > 0) || !(limit.burst >= 1)) throw new Error(`invalid rate limit ${JSON.stringify(limit)}`);
    this.tokens = limit.burst;
    this.lastMs = clock.now();
  }

  /** Takes a token; returns the wait in ms before using it. */
  reserve(): number {
    const now = this.clock.now();
    this.tokens = Math.min(this.limit.burst, this.tokens + ((now - this.lastMs) / 1000) * this.limit.perSecond);
    this.lastMs = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.limit.perSecond) * 1000);
  }
}

/** base × 2^(failures-1), capped; `failures` ≥ 1. */
export function backoffDelayMs(failures: number, baseDelayMs: number, maxDelayMs: number): number {
  if (failures < 1) return 0;
  // 2^40 × any sane base is past any sane max: stop doubling there to stay in exact integers.
  const exponent = Math.min(failures - 1, 40);
  return Math.min(maxDelayMs, baseDelayMs * 2 ** exponent);
}

/** A min-heap of (dueMs, key); entries that no longer match `delayed` are skipped when popped. */
class DueHeap {
  private readonly items: Array<{ dueMs: number; key: string }> = [];

  get size(): number {
    return this.items.length;
  }

  push(item: { dueMs: number; key: string }): void {
    const a = this.items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (a[parent].dueMs <= a[i].dueMs) break;
      [a[parent], a[i]] = [a[i], a[parent]];
      i = parent;
    }
  }

  peek(): { dueMs: number; key: string } | undefined {
    return this.items[0];
  }

  pop(): { dueMs: number; key: string } | undefined {
    const a = this.items;
    if (a.length === 0) return undefined;
    const top = a[0];
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let smallest = i;
        if (l < a.length && a[l].dueMs < a[smallest].dueMs) smallest = l;
        if (r < a.length && a[r].dueMs < a[smallest].dueMs) smallest = r;
        if (smallest === i) break;
        [a[smallest], a[i]] = [a[i], a[smallest]];
        i = smallest;
      }
    }
    return top;
  }

  clear(): void {
    this.items.length = 0;
  }

  /** Replaces the contents (heapify, O(n)). */
  rebuild(items: Array<{ dueMs: number; key: string }>): void {
    this.items.length = 0;
    for (const item of items) this.push(item);
  }
}

/** Stale heap entries allowed beyond the live ones before the heap is rebuilt from `delayed`. */
const HEAP_SLACK = 1_024;

interface Running {
  startedMs: number;
  abort: AbortController;
}

export class WorkQueue {
  readonly name: string;
  private readonly options: WorkQueueOptions;
  private readonly clock: Clock;
  private readonly limiter: TokenBucket;
  /** Waiting for a worker, in arrival order (a Set keeps insertion order). */
  private readonly ready = new Set<string>();
  /** Waiting for a delay: key → due time. */
  private readonly delayed = new Map<string, number>();
  private readonly heap = new DueHeap();
  /** Claimed by a worker (from the moment it is handed over, so no second worker can take it). */
  private readonly running = new Map<string, Running>();
  /** Running keys that were added meanwhile. */
  private readonly dirty = new Set<string>();
  /** Every distinct key in ready, delayed or running: what the cap counts. */
  private readonly members = new Set<string>();
  /** Consecutive failures per key; removed on success (forget). */
  private readonly failures = new Map<string, number>();
  private timer: TimerHandle | undefined;
  private timerDueMs = Infinity;
  private readonly idleWorkers: Array<(key: string | undefined) => void> = [];
  private workers: Promise<void>[] = [];
  private handler: Handler | undefined;
  private stopping = false;
  private retriesTotal = 0;
  private rejectedTotal = 0;

  constructor(options: WorkQueueOptions) {
    if (!Number.isInteger(options.workers) || options.workers < 1) throw new Error(`work queue ${options.name}: workers must be an integer ≥ 1`);
    if (!Number.isInteger(options.maxKeys) || options.maxKeys < 1) throw new Error(`work queue ${options.name}: maxKeys must be an integer ≥ 1`);
    if (!(options.baseDelayMs > 0) || !(options.maxDelayMs >= options.baseDelayMs)) {
      throw new Error(`work queue ${options.name}: need 0 < baseDelayMs ≤ maxDelayMs`);
    }
    this.name = options.name;
    this.options = options;
    this.clock = options.clock ?? systemClock;
    this.limiter = new TokenBucket(options.rateLimit, this.clock);
  }

  /** Starts the workers; each takes one key at a time and calls `handler`. */
  start(handler: Handler): void {
    if (this.handler) throw new Error(`work queue ${this.name} already started`);
    if (this.stopping) throw new Error(`work queue ${this.name} is shut down`);
    this.handler = handler;
    for (let i = 0; i < this.options.workers; i++) this.workers.push(this.work());
  }

  /** Runs `key` as soon as a worker is free (and not before its current run ends). */
  add(key: string): AddResult {
    checkKey(key);
    if (this.stopping) return 'shutdown';
    if (this.running.has(key)) {
      this.dirty.add(key);
      // A pending delay is superseded by the run after this one.
      this.delayed.delete(key);
      return 'dirty';
    }
    if (this.ready.has(key)) return 'merged';
    if (!this.members.has(key) && !this.admit(key)) return 'full';
    this.delayed.delete(key);
    this.makeReady(key);
    return 'queued';
  }

  /** Runs `key` after `delayMs`, unless something runs it sooner. The earliest due time wins. */
  addAfter(key: string, delayMs: number): AddResult {
    checkKey(key);
    if (this.stopping) return 'shutdown';
    if (!(delayMs > 0)) return this.add(key);
    if (this.ready.has(key) || this.dirty.has(key)) return 'merged';
    if (!this.members.has(key) && !this.admit(key)) return 'full';
    this.schedule(key, this.clock.now() + delayMs);
    return 'delayed';
  }

  /** Resets the back-off of `key` (the queue does this itself after a successful run). */
  forget(key: string): void {
    this.failures.delete(key);
  }

  /** Consecutive failures of `key`. */
  failuresOf(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Entries in the delay heap, superseded ones included (bounded; for tests). */
  get heapSize(): number {
    return this.heap.size;
  }

  stats(): WorkQueueStats {
    const now = this.clock.now();
    let longestRunningMs = 0;
    for (const r of this.running.values()) longestRunningMs = Math.max(longestRunningMs, now - r.startedMs);
    return {
      depth: this.ready.size,
      delayed: this.delayed.size,
      running: this.running.size,
      keys: this.members.size,
      retriesTotal: this.retriesTotal,
      rejectedTotal: this.rejectedTotal,
      longestRunningMs,
    };
  }

  /** Keys currently being handled. */
  runningKeys(): string[] {
    return [...this.running.keys()];
  }

  get isShuttingDown(): boolean {
    return this.stopping;
  }

  /**
   * Stops taking keys and drops the waiting ones, then waits until the runs in flight settle, at
   * most `timeoutMs`. With `abort`, their signals are aborted at once (leadership lost); otherwise
   * only when the timeout passes. Returns the keys still running at the deadline.
   */
  async shutdown(options: { timeoutMs: number; abort?: boolean }): Promise<string[]> {
    this.stopping = true;
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.timerDueMs = Infinity;
    this.ready.clear();
    this.delayed.clear();
    this.heap.clear();
    this.dirty.clear();
    this.members.clear();
    for (const key of this.running.keys()) this.members.add(key);
    for (const wake of this.idleWorkers.splice(0)) wake(undefined);
    if (options.abort) for (const r of this.running.values()) r.abort.abort(new Error(`work queue ${this.name} shutting down`));
    const all = Promise.all(this.workers).then(() => 'done' as const);
    let timer: TimerHandle | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = this.clock.setTimeout(() => resolve('late'), options.timeoutMs);
    });
    const outcome = await Promise.race([all, late]);
    this.clock.clearTimeout(timer);
    if (outcome === 'late') {
      for (const r of this.running.values()) r.abort.abort(new Error(`work queue ${this.name}: shutdown deadline passed`));
      return this.runningKeys();
    }
    return [];
  }

  // ---- internals --------------------------------------------------------------------------------

  /** Keeps `members` in step after `key` moved between ready, delayed and running. */
  private settle(key: string): void {
    if (this.ready.has(key) || this.delayed.has(key) || this.running.has(key)) this.members.add(key);
    else this.members.delete(key);
  }

  /** True if a key not yet in the queue may enter it; reports the refusal otherwise. */
  private admit(key: string): boolean {
    if (this.members.size < this.options.maxKeys) return true;
    this.rejectedTotal++;
    this.options.observer?.rejected?.(key, new QueueFullError(this.name, key, this.options.maxKeys));
    return false;
  }

  /** Hands `key` to an idle worker, claimed at once, or leaves it waiting for the next free one. */
  private makeReady(key: string): void {
    const wake = this.idleWorkers.shift();
    if (wake) {
      this.claim(key);
      wake(key);
    } else {
      this.ready.add(key);
    }
    this.settle(key);
  }

  /**
   * Marks `key` running in the same synchronous step that takes it, so that an add arriving
   * before the worker's continuation runs marks it dirty instead of queueing a second run.
   */
  private claim(key: string): void {
    this.running.set(key, { startedMs: this.clock.now(), abort: new AbortController() });
  }

  private schedule(key: string, dueMs: number): void {
    const current = this.delayed.get(key);
    if (current !== undefined && current <= dueMs) return;
    this.delayed.set(key, dueMs);
    this.members.add(key);
    this.heap.push({ dueMs, key });
    // Superseded entries leave the heap only when they reach its top; a key re-added often while it
    // has a long delay would pile them up. Bound the heap to twice the live entries plus a slack.
    if (this.heap.size > 2 * this.delayed.size + HEAP_SLACK) {
      this.heap.rebuild([...this.delayed].map(([k, due]) => ({ key: k, dueMs: due })));
    }
    this.armTimer();
  }

  private armTimer(): void {
    // Drop heap entries that a later add or a shorter delay superseded.
    for (let top = this.heap.peek(); top && this.delayed.get(top.key) !== top.dueMs; top = this.heap.peek()) this.heap.pop();
    const next = this.heap.peek();
    if (!next) {
      this.clock.clearTimeout(this.timer);
      this.timer = undefined;
      this.timerDueMs = Infinity;
      return;
    }
    if (this.timer !== undefined && this.timerDueMs <= next.dueMs) return;
    this.clock.clearTimeout(this.timer);
    this.timerDueMs = next.dueMs;
    this.timer = this.clock.setTimeout(() => this.fireDue(), next.dueMs - this.clock.now());
  }

  private fireDue(): void {
    this.timer = undefined;
    this.timerDueMs = Infinity;
    if (this.stopping) return;
    const now = this.clock.now();
    for (let top = this.heap.peek(); top && top.dueMs <= now; top = this.heap.peek()) {
      this.heap.pop();
      if (this.delayed.get(top.key) !== top.dueMs) continue;
      this.delayed.delete(top.key);
      if (this.running.has(top.key)) this.dirty.add(top.key);
      else if (!this.ready.has(top.key)) this.makeReady(top.key);
      this.settle(top.key);
    }
    this.armTimer();
  }

  private take(): Promise<string | undefined> {
    if (this.stopping) return Promise.resolve(undefined);
    const first = this.ready.values().next();
    if (!first.done) {
      this.ready.delete(first.value);
      this.claim(first.value);
      return Promise.resolve(first.value);
    }
    return new Promise((resolve) => this.idleWorkers.push(resolve));
  }

  private async work(): Promise<void> {
    for (;;) {
      const key = await this.take();
      if (key === undefined) return;
      await this.run(key);
    }
  }

  private async run(key: string): Promise<void> {
    const claimed = this.running.get(key);
    if (!claimed) throw new Error(`work queue ${this.name}: ${key} runs without being claimed`);
    if (this.stopping) {
      // Handed over just before shutdown: not started, so not run.
      this.running.delete(key);
      this.settle(key);
      return;
    }
    const startedMs = this.clock.now();
    claimed.startedMs = startedMs;
    const abort = claimed.abort;
    let timeout: TimerHandle | undefined;
    if (this.options.runTimeoutMs !== undefined) {
      timeout = this.clock.setTimeout(() => abort.abort(new Error(`${this.name} ${key}: run exceeded ${this.options.runTimeoutMs} ms`)), this.options.runTimeoutMs);
    }
    let report: RunReport;
    try {
      const result = await this.handler!(key, abort.signal);
      this.forget(key);
      const requeueAfterMs = result?.requeueAfterMs;
      if (requeueAfterMs !== undefined && requeueAfterMs > 0) {
        this.schedule(key, this.clock.now() + requeueAfterMs);
        report = { key, outcome: 'requeue', durationMs: this.clock.now() - startedMs, failures: 0, nextRunInMs: requeueAfterMs };
      } else {
        report = { key, outcome: 'success', durationMs: this.clock.now() - startedMs, failures: 0 };
      }
    } catch (error) {
      const failures = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, failures);
      const delayMs = Math.max(backoffDelayMs(failures, this.options.baseDelayMs, this.options.maxDelayMs), this.limiter.reserve());
      this.retriesTotal++;
      if (!this.stopping) this.schedule(key, this.clock.now() + delayMs);
      report = { key, outcome: 'error', durationMs: this.clock.now() - startedMs, error, failures, nextRunInMs: delayMs };
    } finally {
      this.clock.clearTimeout(timeout);
      this.running.delete(key);
    }
    if (this.stopping) {
      this.failures.delete(key);
    } else if (this.dirty.delete(key)) {
      // Added while it ran: run again now; this supersedes a retry or requeue delay.
      this.delayed.delete(key);
      this.makeReady(key);
      report.nextRunInMs = 0;
    } else if (!this.delayed.has(key)) {
      this.failures.delete(key);
    }
    this.settle(key);
    if (this.delayed.size > 0) this.armTimer();
    try {
      this.options.observer?.runDone?.(report);
    } catch {
      // An observer's bug must not stop a worker.
    }
  }
}

function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
    throw new Error(`invalid work queue key ${JSON.stringify(key)?.slice(0, 80)} (1 to ${MAX_KEY_LENGTH} characters)`);
  }
}
