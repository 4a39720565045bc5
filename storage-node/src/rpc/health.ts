/**
 * Peer health: a dead peer must cost one fast failure, not a timeout per request.
 * A peer is marked down after `failuresToDown` consecutive failures, or at once on a refused
 * connection (nothing is listening: waiting would not help). While down, callers skip it
 * (PeerUnavailableError without touching the network) and one probe per `probeIntervalMs`
 * may be sent (see `takeProbe`); a successful exchange marks it up again.
 */
export type FailureKind = 'refused' | 'timeout' | 'error';

export interface PeerHealthOptions {
  failuresToDown?: number;
  probeIntervalMs?: number;
  /** Bound on tracked peers; a grid is far smaller. */
  maxPeers?: number;
  now?: () => number;
}

export interface PeerHealthEntry {
  peerId: string;
  up: boolean;
  consecutiveFailures: number;
  lastFailure?: { kind: FailureKind; message: string; atMs: number };
  lastSuccessMs?: number;
  downSinceMs?: number;
  lastProbeMs?: number;
}

export type HealthListener = (peerId: string, up: boolean) => void;

export class PeerHealth {
  readonly failuresToDown: number;
  readonly probeIntervalMs: number;
  private readonly maxPeers: number;
  private readonly now: () => number;
  private readonly peers = new Map<string, PeerHealthEntry>();
  private readonly listeners: HealthListener[] = [];

  constructor(o: PeerHealthOptions = {}) {
    this.failuresToDown = o.failuresToDown ?? 3;
    this.probeIntervalMs = o.probeIntervalMs ?? 1000;
    this.maxPeers = o.maxPeers ?? 4096;
    this.now = o.now ?? Date.now;
    if (!(this.failuresToDown >= 1)) throw new RangeError('failuresToDown must be >= 1');
    if (!(this.probeIntervalMs > 0)) throw new RangeError('probeIntervalMs must be > 0');
  }

  /** Unknown peers are presumed up: the first exchange tells. */
  isUp(peerId: string): boolean {
    return this.peers.get(peerId)?.up ?? true;
  }

  /** Called on `(peerId, up)` at every transition. */
  onChange(listener: HealthListener): void {
    this.listeners.push(listener);
  }

  recordSuccess(peerId: string): void {
    const e = this.entry(peerId);
    const wasDown = !e.up;
    e.up = true;
    e.consecutiveFailures = 0;
    e.lastSuccessMs = this.now();
    e.downSinceMs = undefined;
    if (wasDown) this.emit(peerId, true);
  }

  /** Returns true when this failure marked the peer down. */
  recordFailure(peerId: string, kind: FailureKind, message: string): boolean {
    const e = this.entry(peerId);
    const nowMs = this.now();
    e.consecutiveFailures += 1;
    e.lastFailure = { kind, message, atMs: nowMs };
    if (!e.up) return false;
    if (kind === 'refused' || e.consecutiveFailures >= this.failuresToDown) {
      e.up = false;
      e.downSinceMs = nowMs;
      // The first probe waits a full interval: the failure we just saw is fresh news.
      e.lastProbeMs = nowMs;
      this.emit(peerId, false);
      return true;
    }
    return false;
  }

  /** While the peer is down: true at most once per probe interval; the caller then sends one probe. */
  takeProbe(peerId: string): boolean {
    const e = this.peers.get(peerId);
    if (e === undefined || e.up) return false;
    const nowMs = this.now();
    if (e.lastProbeMs !== undefined && nowMs - e.lastProbeMs < this.probeIntervalMs) return false;
    e.lastProbeMs = nowMs;
    return true;
  }

  /** Milliseconds until the next probe of a down peer may be taken (0 if now). */
  msUntilProbe(peerId: string): number {
    const e = this.peers.get(peerId);
    if (e === undefined || e.up || e.lastProbeMs === undefined) return 0;
    return Math.max(0, e.lastProbeMs + this.probeIntervalMs - this.now());
  }

  forget(peerId: string): void {
    this.peers.delete(peerId);
  }

  /** A copy of the state of every tracked peer, for status pages. */
  snapshot(): PeerHealthEntry[] {
    return [...this.peers.values()].map((e) => ({ ...e, lastFailure: e.lastFailure && { ...e.lastFailure } }));
  }

  private entry(peerId: string): PeerHealthEntry {
    let e = this.peers.get(peerId);
    if (e === undefined) {
      if (this.peers.size >= this.maxPeers) throw new RangeError(`more than ${this.maxPeers} peers tracked`);
      e = { peerId, up: true, consecutiveFailures: 0 };
      this.peers.set(peerId, e);
    }
    return e;
  }

  private emit(peerId: string, up: boolean): void {
    for (const l of this.listeners) {
      try {
        l(peerId, up);
      } catch {
        // A listener's bug must not change the outcome of the call that triggered it.
      }
    }
  }
}
