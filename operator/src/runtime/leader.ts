/**
 * Leader election through a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it,
 * so that two operator replicas can run and only one reconciles:
 *
 * - every retry period, each candidate reads the Lease; it takes it when it is missing, released
 *   (no holder) or expired, and the holder renews it (optimistic concurrency on resourceVersion:
 *   of two writers, one gets 409 and stays standby);
 * - "expired" is judged on the local clock: a Lease whose record has not changed for
 *   leaseDuration since this process last saw it change. Clocks of the replicas are never
 *   compared, only their rates;
 * - the leader steps down when it has not renewed for renewDeadline (< leaseDuration): a timer,
 *   so that a hung request cannot delay it. It stops reconciling before anyone else may take the
 *   Lease, so two leaders never overlap. It then stays a candidate;
 * - on shutdown the leader releases the Lease (empty holder), so the standby takes over at its
 *   next retry instead of waiting out the lease.
 */
import { randomUUID } from 'node:crypto';
import * as os from 'node:os';
import type { Logger } from 'winston';
import { Clock, TimerHandle, sleep, systemClock } from './clock';
import { KubeApi, isNotFound } from './kube-api';
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE } from './informers';

export interface LeaseSpec {
  holderIdentity?: string | null;
  leaseDurationSeconds?: number;
  acquireTime?: string | null;
  renewTime?: string | null;
  leaseTransitions?: number;
}

export interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; [field: string]: unknown };
  spec?: LeaseSpec;
}

/** The three calls leader election makes; a 409 from create or update means another writer won. */
export interface LeaseClient {
  /** `namespace/name`, for logs. */
  readonly description: string;
  get(): Promise<Lease | undefined>;
  create(spec: LeaseSpec): Promise<Lease>;
  /** Replaces the Lease; fails with 409 if its resourceVersion is not the current one. */
  update(lease: Lease): Promise<Lease>;
}

export function kubeLeaseClient(api: KubeApi, namespace: string, name: string, timeoutMs: number): LeaseClient {
  const collection = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/leases`;
  const item = `${collection}/${encodeURIComponent(name)}`;
  return {
    description: `${namespace}/${name}`,
    async get() {
      try {
        return await api.request<Lease>('GET', item, { timeoutMs });
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },
    create(spec) {
      const body: Lease = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name, namespace, labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE } },
        spec,
      };
      return api.request<Lease>('POST', collection, { body, timeoutMs });
    },
    update(lease) {
      return api.request<Lease>('PUT', item, { body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', ...lease }, timeoutMs });
    },
  };
}

export interface LeaderElectionTiming {
  /** How long a standby waits, after it last saw the Lease change, before taking it. */
  leaseDurationMs: number;
  /** How long the leader keeps leading without a successful renewal. */
  renewDeadlineMs: number;
  /** Time between two attempts to acquire or renew. */
  retryPeriodMs: number;
}

/** client-go's defaults. */
export const DEFAULT_LEADER_TIMING: LeaderElectionTiming = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

export function checkLeaderTiming(t: LeaderElectionTiming): void {
  if (!(t.retryPeriodMs > 0 && t.renewDeadlineMs > t.retryPeriodMs && t.leaseDurationMs > t.renewDeadlineMs)) {
    throw new Error(`leader election needs 0 < retry period (${t.retryPeriodMs} ms) < renew deadline (${t.renewDeadlineMs} ms) < lease duration (${t.leaseDurationMs} ms)`);
  }
  if (t.leaseDurationMs % 1000 !== 0) throw new Error(`the lease duration is written in whole seconds (${t.leaseDurationMs} ms)`);
}

/** Each Lease call gets half the renew deadline: a read and a write fit in it. */
export function leaseRequestTimeoutMs(t: LeaderElectionTiming): number {
  return Math.max(500, Math.floor(t.renewDeadlineMs / 2));
}

/** `<pod or host name>_<random>`: unique even for two processes on one host. */
export function defaultIdentity(): string {
  return `${process.env.POD_NAME || os.hostname()}_${randomUUID().slice(0, 8)}`;
}

/** MicroTime as the API server parses it: RFC 3339 with exactly six fractional digits. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export interface LeaderCallbacks {
  onStartedLeading(): void;
  onStoppedLeading(reason: string): void;
  /** The holder this process sees changed (undefined: released or none). */
  onNewLeader?(identity: string | undefined): void;
}

export interface LeaderElectorOptions {
  identity: string;
  client: LeaseClient;
  timing: LeaderElectionTiming;
  callbacks: LeaderCallbacks;
  log: Logger;
  clock?: Clock;
  /** Candidates wait retryPeriod × (1 + jitter × random) between attempts (client-go: 1.2). */
  jitter?: number;
  random?: () => number;
}

export interface LeaderStatus {
  identity: string;
  leading: boolean;
  /** Holder in the last Lease this process read or wrote. */
  holder: string | undefined;
  /** Local time of the last renewal (leader) or of the last successful read or write (anyone). */
  lastRenewMs: number | undefined;
  lastContactMs: number | undefined;
  /** Local time at which the election loop last finished an attempt. */
  lastAttemptMs: number | undefined;
}

export class LeaderElector {
  readonly identity: string;
  private readonly clock: Clock;
  private readonly timing: LeaderElectionTiming;
  private leading = false;
  private stopped = true;
  private readonly stopController = new AbortController();
  private loopDone: Promise<void> = Promise.resolve();
  private deadlineTimer: TimerHandle | undefined;
  /** The last record seen, and when (local clock) it was first seen in that state. */
  private observed: LeaseSpec | undefined;
  private observedAtMs = 0;
  private lastRenewMs: number | undefined;
  private lastContactMs: number | undefined;
  private lastAttemptMs: number | undefined;

  constructor(private readonly options: LeaderElectorOptions) {
    checkLeaderTiming(options.timing);
    this.identity = options.identity;
    this.timing = options.timing;
    this.clock = options.clock ?? systemClock;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  status(): LeaderStatus {
    return {
      identity: this.identity,
      leading: this.leading,
      holder: this.observed?.holderIdentity || undefined,
      lastRenewMs: this.lastRenewMs,
      lastContactMs: this.lastContactMs,
      lastAttemptMs: this.lastAttemptMs,
    };
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.options.log.info('leader election started', {
      lease: this.options.client.description,
      identity: this.identity,
      leaseDurationMs: this.timing.leaseDurationMs,
      renewDeadlineMs: this.timing.renewDeadlineMs,
      retryPeriodMs: this.timing.retryPeriodMs,
    });
    this.loopDone = this.loop();
  }

  /**
   * Stops the election loop (waiting for an attempt in flight) and, with `release`, hands the
   * Lease back if this process holds it. Leading stops here at the latest.
   */
  async stop(options: { release: boolean }): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.stopController.abort();
    await this.loopDone;
    // An attempt that won the Lease while stopping leaves it ours without leading: release it too.
    const holdsLease = this.leading || this.observed?.holderIdentity === this.identity;
    this.stepDown('shutting down');
    if (options.release && holdsLease) await this.release();
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      const attemptMs = this.clock.now();
      let ok = false;
      try {
        ok = await this.tryAcquireOrRenew(attemptMs);
      } catch (err) {
        const level = this.leading ? 'warn' : 'debug';
        this.options.log.log(level, this.leading ? 'lease renewal failed' : 'lease acquisition failed', {
          lease: this.options.client.description,
          error: (err as Error).message,
        });
      }
      this.lastAttemptMs = this.clock.now();
      if (this.stopped) break;
      if (ok) {
        this.lastRenewMs = attemptMs;
        this.armDeadline();
        if (!this.leading) {
          this.leading = true;
          this.options.log.info('leading', { lease: this.options.client.description, identity: this.identity });
          this.options.callbacks.onStartedLeading();
        }
      } else if (this.leading) {
        const holder = this.observed?.holderIdentity || undefined;
        if (holder !== undefined && holder !== this.identity) this.stepDown(`the Lease is held by ${holder}`);
        else if (this.clock.now() - (this.lastRenewMs ?? 0) >= this.timing.renewDeadlineMs) this.stepDown(`lease not renewed for ${this.timing.renewDeadlineMs} ms`);
      }
      const jitter = this.leading ? 0 : (this.options.jitter ?? 0.2) * (this.options.random ?? Math.random)();
      await sleep(this.clock, this.timing.retryPeriodMs * (1 + jitter), this.stopController.signal);
    }
  }

  /** True if this process holds the Lease after the attempt. Errors (409 included) mean no. */
  private async tryAcquireOrRenew(nowMs: number): Promise<boolean> {
    const client = this.options.client;
    const lease = await client.get();
    this.lastContactMs = this.clock.now();
    if (!lease) {
      const created = await client.create(this.record(nowMs, undefined));
      this.observe(created.spec ?? {}, this.clock.now());
      return true;
    }
    const spec = lease.spec ?? {};
    this.observe(spec, nowMs);
    const holder = spec.holderIdentity || undefined;
    if (holder && holder !== this.identity) {
      const durationMs = (spec.leaseDurationSeconds ?? this.timing.leaseDurationMs / 1000) * 1000;
      if (this.observedAtMs + durationMs > nowMs) return false;
      this.options.log.info('lease expired; taking it', { lease: client.description, previousHolder: holder });
    }
    const updated = await client.update({ ...lease, spec: this.record(nowMs, spec) });
    this.observe(updated.spec ?? {}, this.clock.now());
    return true;
  }

  private record(nowMs: number, previous: LeaseSpec | undefined): LeaseSpec {
    const renewing = previous?.holderIdentity === this.identity;
    return {
      holderIdentity: this.identity,
      leaseDurationSeconds: this.timing.leaseDurationMs / 1000,
      acquireTime: renewing && previous?.acquireTime ? previous.acquireTime : microTime(nowMs),
      renewTime: microTime(nowMs),
      leaseTransitions: (previous?.leaseTransitions ?? 0) + (previous && !renewing ? 1 : 0),
    };
  }

  private observe(spec: LeaseSpec, nowMs: number): void {
    const before = this.observed;
    const changed = !before ||
      before.holderIdentity !== spec.holderIdentity ||
      before.renewTime !== spec.renewTime ||
      before.acquireTime !== spec.acquireTime ||
      before.leaseTransitions !== spec.leaseTransitions;
    if (!changed) return;
    this.observed = { ...spec };
    this.observedAtMs = nowMs;
    const holder = spec.holderIdentity || undefined;
    if ((before?.holderIdentity || undefined) !== holder || !before) {
      this.options.log.info('lease holder', { lease: this.options.client.description, holder: holder ?? null, self: holder === this.identity });
      this.options.callbacks.onNewLeader?.(holder);
    }
  }

  private armDeadline(): void {
    this.clock.clearTimeout(this.deadlineTimer);
    const dueInMs = (this.lastRenewMs ?? this.clock.now()) + this.timing.renewDeadlineMs - this.clock.now();
    this.deadlineTimer = this.clock.setTimeout(() => {
      this.deadlineTimer = undefined;
      this.stepDown(`lease not renewed for ${this.timing.renewDeadlineMs} ms`);
    }, dueInMs);
  }

  private stepDown(reason: string): void {
    this.clock.clearTimeout(this.deadlineTimer);
    this.deadlineTimer = undefined;
    if (!this.leading) return;
    this.leading = false;
    this.options.log.log(reason === 'shutting down' ? 'info' : 'warn', 'stopped leading', { lease: this.options.client.description, reason });
    this.options.callbacks.onStoppedLeading(reason);
  }

  /** Empties the holder (if still ours) so that a standby need not wait for the lease to expire. */
  private async release(): Promise<void> {
    const client = this.options.client;
    try {
      const lease = await client.get();
      if (!lease || lease.spec?.holderIdentity !== this.identity) return;
      const nowMs = this.clock.now();
      await client.update({
        ...lease,
        spec: { ...lease.spec, holderIdentity: null, leaseDurationSeconds: 1, acquireTime: microTime(nowMs), renewTime: microTime(nowMs) },
      });
      this.observed = undefined;
      this.options.log.info('lease released', { lease: client.description });
    } catch (err) {
      this.options.log.warn('lease release failed; the standby takes over when it expires', { lease: client.description, error: (err as Error).message });
    }
  }
}
