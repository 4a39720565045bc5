/**
 * The controller manager: one work queue per custom kind, fed by the informers, drained by that
 * kind's reconciler — only while this replica leads.
 *
 * A reconciler is a plain async function of a key (`namespace/name`), registered per kind. It
 * reads what it needs from the informer caches, acts, and returns; a throw is retried with
 * back-off (a 409 conflict quietly), `{ requeueAfterMs }` asks to look again later (polling
 * storage nodes), and the AbortSignal is aborted when leadership is lost, on shutdown, or when
 * the run exceeds its time limit.
 *
 * Each leadership term gets fresh queues: on becoming leader, wait until every informer has
 * synced (a reconciler must not take an empty cache for "nothing exists"), then start the workers
 * and queue every cached object of every registered kind; on losing it, abort the runs in flight
 * and drop the queues. A resync queues every object again periodically, which also brings back a
 * key refused by a full queue.
 */
import type { Logger } from 'winston';
import type { Kind } from '../api/types';
import { Clock, TimerHandle, systemClock } from './clock';
import { EventType, Target, objectKey, parseKey } from './informers';
import type { Informers } from './informers';
import { isConflict } from './kube-api';
import type { OperatorMetrics, ReconcileResult } from './metrics';
import { DEFAULT_QUEUE_OPTIONS, HandlerResult, RunReport, WorkQueue, WorkQueueOptions, WorkQueueStats } from './work-queue';

/** What a reconciler may return: nothing when done, or when to look again. */
export type ReconcileOutcome = HandlerResult;

export type Reconciler = (key: string, signal: AbortSignal) => Promise<void | ReconcileOutcome>;

export type QueueSettings = Omit<WorkQueueOptions, 'name' | 'observer' | 'clock'>;

export interface ControllerManagerOptions {
  reconcilers: Partial<Record<Kind, Reconciler>>;
  informers: Pick<Informers, 'onTarget' | 'waitForSync' | 'list'>;
  log: Logger;
  metrics?: OperatorMetrics;
  clock?: Clock;
  queue?: Partial<QueueSettings>;
  /** How long a graceful stop waits for reconciles in flight (default 30 s). */
  shutdownTimeoutMs?: number;
  /** Every object is queued again this often while leading (default 10 min; 0: never). */
  resyncPeriodMs?: number;
}

export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 30_000;
export const DEFAULT_RESYNC_PERIOD_MS = 10 * 60_000;
const FULL_QUEUE_LOG_INTERVAL_MS = 10_000;

export class ControllerManager {
  private readonly clock: Clock;
  private readonly queueSettings: QueueSettings;
  private readonly kinds: Kind[];
  private queues = new Map<Kind, WorkQueue>();
  private leading = false;
  private term = 0;
  private termAbort: AbortController | undefined;
  private resyncTimer: TimerHandle | undefined;
  private workersStarted = false;
  private stopping: Promise<void> = Promise.resolve();
  private readonly lastFullLogMs = new Map<Kind, number>();
  private readonly refusedSinceLog = new Map<Kind, number>();

  constructor(private readonly options: ControllerManagerOptions) {
    this.clock = options.clock ?? systemClock;
    this.queueSettings = { ...DEFAULT_QUEUE_OPTIONS, ...options.queue };
    this.kinds = Object.keys(options.reconcilers) as Kind[];
    options.informers.onTarget((target, event) => this.onEvent(target, event));
  }

  get isLeading(): boolean {
    return this.leading;
  }

  /** Workers run (leading, informers synced). */
  get isReconciling(): boolean {
    return this.leading && this.workersStarted;
  }

  queueStats(): Map<string, WorkQueueStats> {
    const stats = new Map<string, WorkQueueStats>();
    for (const [kind, queue] of this.queues) stats.set(kind, queue.stats());
    return stats;
  }

  /** Becomes leader: queues now, workers once the informers have synced. */
  startLeading(): void {
    if (this.leading) return;
    this.leading = true;
    const term = ++this.term;
    this.termAbort = new AbortController();
    this.workersStarted = false;
    this.queues = new Map(this.kinds.map((kind) => [kind, this.newQueue(kind)]));
    this.options.metrics?.leadership(true);
    void this.beginTerm(term, this.termAbort.signal);
  }

  /**
   * Stops reconciling: no new runs; the runs in flight are aborted at once (`abort`, leadership
   * lost: another replica may take over soon) or given the shutdown timeout (graceful stop).
   */
  stopLeading(reason: string, options: { abort: boolean }): Promise<void> {
    if (!this.leading) return this.stopping;
    this.leading = false;
    this.workersStarted = false;
    this.termAbort?.abort();
    this.clock.clearTimeout(this.resyncTimer);
    this.resyncTimer = undefined;
    this.options.metrics?.leadership(false);
    const queues = [...this.queues.values()];
    this.options.log.info('reconcilers stopping', { reason, running: queues.reduce((n, q) => n + q.stats().running, 0) });
    const timeoutMs = this.options.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS;
    this.stopping = Promise.all(queues.map((q) => q.shutdown({ timeoutMs, abort: options.abort }))).then((left) => {
      const stillRunning = left.flat();
      if (stillRunning.length > 0) this.options.log.warn('reconciles still running after the shutdown timeout', { keys: stillRunning, timeoutMs });
      else this.options.log.info('reconcilers stopped', { reason });
    });
    return this.stopping;
  }

  private async beginTerm(term: number, signal: AbortSignal): Promise<void> {
    // Runs of the previous term may still be settling: one key must never run in two terms at once.
    await this.stopping;
    this.options.log.info('waiting for informers to sync before reconciling');
    const synced = await this.options.informers.waitForSync(signal);
    if (!synced || signal.aborted || term !== this.term) return;
    // Queue the cache first, so that a key an event queued meanwhile is merged, not run twice.
    const queued = this.resync();
    for (const [kind, queue] of this.queues) queue.start(this.options.reconcilers[kind]!);
    this.workersStarted = true;
    this.options.log.info('reconcilers started', { kinds: this.kinds, queued, workersPerKind: this.queueSettings.workers });
    this.armResync(term);
  }

  private armResync(term: number): void {
    const periodMs = this.options.resyncPeriodMs ?? DEFAULT_RESYNC_PERIOD_MS;
    if (!(periodMs > 0)) return;
    this.resyncTimer = this.clock.setTimeout(() => {
      if (term !== this.term || !this.leading) return;
      const queued = this.resync();
      this.options.log.debug('resync', { queued });
      this.armResync(term);
    }, periodMs);
  }

  /** Queues every cached object of every registered kind; returns how many keys were queued. */
  private resync(): number {
    let queued = 0;
    for (const [kind, queue] of this.queues) {
      for (const obj of this.options.informers.list(kind)) if (queue.add(objectKey(obj)) === 'queued') queued++;
    }
    return queued;
  }

  private onEvent(target: Target, event: { type: EventType; resource: string; key: string }): void {
    if (!this.leading) return;
    const queue = this.queues.get(target.kind);
    if (!queue) return;
    const result = queue.add(target.key);
    if (result === 'queued' || result === 'dirty') {
      this.options.log.debug('queued', { kind: target.kind, key: target.key, cause: `${event.type} ${event.resource} ${event.key}` });
    }
  }

  private newQueue(kind: Kind): WorkQueue {
    return new WorkQueue({
      ...this.queueSettings,
      name: kind,
      clock: this.clock,
      observer: {
        runDone: (report) => this.report(kind, report),
        rejected: (key, error) => {
          this.options.metrics?.rejected(kind);
          // One line per interval, not one per refused event: a full queue comes with an event storm.
          const nowMs = this.clock.now();
          const last = this.lastFullLogMs.get(kind) ?? -Infinity;
          const refused = (this.refusedSinceLog.get(kind) ?? 0) + 1;
          if (nowMs - last < FULL_QUEUE_LOG_INTERVAL_MS) {
            this.refusedSinceLog.set(kind, refused);
            return;
          }
          this.lastFullLogMs.set(kind, nowMs);
          this.refusedSinceLog.set(kind, 0);
          this.options.log.warn('work queue full', { kind, key, maxKeys: error.maxKeys, refused, error: error.message });
        },
      },
    });
  }

  private report(kind: Kind, report: RunReport): void {
    const conflict = report.outcome === 'error' && isConflict(report.error);
    const result: ReconcileResult = conflict ? 'conflict' : report.outcome;
    this.options.metrics?.reconciled(kind, result, report.durationMs);
    if (report.outcome === 'error') this.options.metrics?.retried(kind);
    const { namespace, name } = parseKey(report.key);
    const meta = { kind, namespace, name, durationMs: report.durationMs };
    if (result === 'error') {
      this.options.log.warn('reconcile failed', {
        ...meta,
        error: report.error instanceof Error ? report.error.message : String(report.error),
        failures: report.failures,
        retryInMs: report.nextRunInMs,
      });
    } else if (result === 'conflict') {
      this.options.log.debug('reconcile conflict; requeued', { ...meta, retryInMs: report.nextRunInMs });
    } else {
      this.options.log.debug('reconcile done', { ...meta, result, ...(report.nextRunInMs !== undefined ? { nextRunInMs: report.nextRunInMs } : {}) });
    }
  }
}
