import { S3Error } from '../s3/error';
import type { BucketRecord, ObjectVersion, RetentionMode } from '../meta/types';

/** Object Lock rules, pure: who may delete a version or change its retention, and default retention. */

const DAY_MS = 86_400_000;

export function defaultRetention(bucket: BucketRecord, nowMs: number): ObjectVersion['retention'] {
  const d = bucket.objectLockEnabled ? bucket.lockDefault : undefined;
  if (!d) return undefined;
  const days = d.days ?? (d.years ?? 0) * 365;
  return { mode: d.mode, untilMs: nowMs + days * DAY_MS };
}

/** Throws AccessDenied when the version is protected: legal hold, COMPLIANCE, or GOVERNANCE without bypass. */
export function assertDeletable(v: ObjectVersion, bypassGovernance: boolean, nowMs: number): void {
  if (v.legalHold) throw new S3Error('AccessDenied', 'Access Denied because object protected by object lock (legal hold).');
  const r = v.retention;
  if (!r || r.untilMs <= nowMs) return;
  if (r.mode === 'COMPLIANCE') throw new S3Error('AccessDenied', 'Access Denied because object protected by object lock (COMPLIANCE retention).');
  if (!bypassGovernance) throw new S3Error('AccessDenied', 'Access Denied because object protected by object lock (GOVERNANCE retention; bypass not requested).');
}

/**
 * A retention change is allowed when it keeps the object at least as protected, or, for GOVERNANCE, when the
 * caller asks to bypass governance. COMPLIANCE can never be shortened, removed, or turned into GOVERNANCE.
 */
export function assertRetentionChange(
  current: ObjectVersion['retention'],
  next: { mode: RetentionMode; untilMs: number } | undefined,
  bypassGovernance: boolean,
  nowMs: number,
): void {
  if (next && next.untilMs <= nowMs) throw new S3Error('InvalidArgument', 'The retain until date must be in the future!');
  if (!current || current.untilMs <= nowMs) return;
  const weakens = !next || next.untilMs < current.untilMs || (current.mode === 'COMPLIANCE' && next.mode !== 'COMPLIANCE');
  if (!weakens) return;
  if (current.mode === 'COMPLIANCE') throw new S3Error('AccessDenied', 'Access Denied: a COMPLIANCE retention cannot be shortened, removed or changed.');
  if (!bypassGovernance) throw new S3Error('AccessDenied', 'Access Denied: shortening a GOVERNANCE retention needs x-amz-bypass-governance-retention.');
}
