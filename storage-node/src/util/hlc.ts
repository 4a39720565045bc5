import crypto from 'node:crypto';

/**
 * Hybrid logical clock for version ordering: microsecond-scale integers that never go backwards on this
 * node, even if the wall clock does, and that follow the newest timestamp seen from peers (observe()).
 * Versions of a key are ordered by this value, newest first; ties are broken by version id.
 */
export class HybridClock {
  private last = 0;

  constructor(private readonly nowMs: () => number = Date.now) {}

  now(): number {
    const wall = this.nowMs() * 1000;
    this.last = wall > this.last ? wall : this.last + 1;
    if (!Number.isSafeInteger(this.last)) throw new Error('hybrid clock overflow');
    return this.last;
  }

  /** Move forward past a timestamp learnt from elsewhere (replication, restart from stored data). */
  observe(ts: number): void {
    if (ts > this.last) this.last = ts;
  }
}

/** Version ids: 14 hex digits of the clock value (so ids sort like versions) + 12 random URL-safe chars. */
export function newVersionId(ts: number): string {
  return ts.toString(16).padStart(14, '0') + crypto.randomBytes(9).toString('base64url');
}

const VERSION_ID_RE = /^[0-9a-f]{14}[A-Za-z0-9_-]{12}$/;

export function isValidVersionId(v: string): boolean {
  return v === 'null' || VERSION_ID_RE.test(v);
}

export function newUploadId(): string {
  return crypto.randomBytes(24).toString('base64url');
}
