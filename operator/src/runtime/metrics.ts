/**
 * The operator's Prometheus metrics, in a registry of its own (never prom-client's global one).
 * Queue and informer gauges are read when scraped, from whatever queues exist at that moment
 * (queues are created anew each time this replica becomes leader).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { WorkQueueStats } from './work-queue';

/** 5 ms … 5 min: a reconcile is a few API calls, or a layout push to every storage node. */
const RECONCILE_BUCKETS_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export type ReconcileResult = 'success' | 'requeue' | 'conflict' | 'error';

export interface MetricsSources {
  queues(): Map<string, WorkQueueStats>;
  informers(): Array<{ resource: string; namespace: string; synced: boolean }>;
  leader(): boolean;
}

export class OperatorMetrics {
  readonly registry = new Registry();
  private readonly reconciles: Counter<'kind' | 'result'>;
  private readonly reconcileErrors: Counter<'kind'>;
  private readonly reconcileDuration: Histogram<'kind'>;
  private readonly queueRetries: Counter<'kind'>;
  private readonly queueRejected: Counter<'kind'>;
  private readonly leaderTransitions: Counter<'direction'>;
  private readonly informerLists: Counter<'resource' | 'namespace'>;
  private readonly informerRestarts: Counter<'resource' | 'namespace'>;
  private sources: MetricsSources | undefined;

  constructor(options: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.reconciles = new Counter({ name: 'archipel_operator_reconcile_total', help: 'Reconciles finished, by kind and result (success, requeue, conflict, error).', labelNames: ['kind', 'result'], registers });
    this.reconcileErrors = new Counter({ name: 'archipel_operator_reconcile_errors_total', help: 'Reconciles that failed and will be retried with back-off.', labelNames: ['kind'], registers });
    this.reconcileDuration = new Histogram({ name: 'archipel_operator_reconcile_duration_seconds', help: 'Time spent in one reconcile.', labelNames: ['kind'], buckets: RECONCILE_BUCKETS_SECONDS, registers });
    this.queueRetries = new Counter({ name: 'archipel_operator_workqueue_retries_total', help: 'Keys scheduled again after a failed reconcile.', labelNames: ['kind'], registers });
    this.queueRejected = new Counter({ name: 'archipel_operator_workqueue_rejected_total', help: 'Keys refused because the queue held its maximum of distinct keys.', labelNames: ['kind'], registers });
    this.leaderTransitions = new Counter({ name: 'archipel_operator_leader_transitions_total', help: 'Times this replica started or stopped leading.', labelNames: ['direction'], registers });
    this.informerLists = new Counter({ name: 'archipel_operator_informer_lists_total', help: 'Complete lists by an informer: the first, then every relist (410 Gone, restart).', labelNames: ['resource', 'namespace'], registers });
    this.informerRestarts = new Counter({ name: 'archipel_operator_informer_restarts_total', help: 'Informers restarted after an error.', labelNames: ['resource', 'namespace'], registers });

    const self = this;
    const queueGauge = (name: string, help: string, pick: (s: WorkQueueStats) => number): void => {
      new Gauge({
        name,
        help,
        labelNames: ['kind'],
        registers,
        collect() {
          this.reset();
          for (const [kind, stats] of self.sources?.queues() ?? []) this.set({ kind }, pick(stats));
        },
      });
    };
    queueGauge('archipel_operator_workqueue_depth', 'Keys waiting for a worker.', (s) => s.depth);
    queueGauge('archipel_operator_workqueue_delayed', 'Keys waiting for a retry back-off or a requeue delay.', (s) => s.delayed);
    queueGauge('archipel_operator_workqueue_running', 'Keys being reconciled.', (s) => s.running);
    queueGauge('archipel_operator_workqueue_keys', 'Distinct keys in the queue (the cap applies to this).', (s) => s.keys);
    queueGauge('archipel_operator_workqueue_longest_running_seconds', 'Age of the oldest reconcile in flight.', (s) => s.longestRunningMs / 1000);
    new Gauge({
      name: 'archipel_operator_leader',
      help: '1 if this replica holds the Lease and reconciles, else 0.',
      registers,
      collect() {
        this.set(self.sources?.leader() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'archipel_operator_informer_synced',
      help: '1 once the informer has listed its resource, else 0.',
      labelNames: ['resource', 'namespace'],
      registers,
      collect() {
        this.reset();
        for (const i of self.sources?.informers() ?? []) this.set({ resource: i.resource, namespace: i.namespace }, i.synced ? 1 : 0);
      },
    });
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** Where the scraped gauges read from; set once the components exist. */
  setSources(sources: MetricsSources): void {
    this.sources = sources;
  }

  reconciled(kind: string, result: ReconcileResult, durationMs: number): void {
    this.reconciles.inc({ kind, result });
    if (result === 'error') this.reconcileErrors.inc({ kind });
    this.reconcileDuration.observe({ kind }, durationMs / 1000);
  }

  retried(kind: string): void {
    this.queueRetries.inc({ kind });
  }

  rejected(kind: string): void {
    this.queueRejected.inc({ kind });
  }

  leadership(started: boolean): void {
    this.leaderTransitions.inc({ direction: started ? 'started' : 'stopped' });
  }

  listed(resource: string, namespace: string): void {
    this.informerLists.inc({ resource, namespace });
  }

  restarted(resource: string, namespace: string): void {
    this.informerRestarts.inc({ resource, namespace });
  }
}
