// Replicated metadata records as they travel between gateways and replicas, and their merge.
import { replicaRecordWins } from '../meta/meta-store';
import type { ObjectVersion } from '../meta/types';

/**
 * One version's record: the whole version as written at `updatedTs` (hybrid clock), or a tombstone
 * (no `version`) saying the version was deleted at `updatedTs`. Last writer wins; on equal times a
 * tombstone wins, so a delete and a write with the same time resolve the same way everywhere.
 */
export interface VersionRecord {
  bucket: string;
  key: string;
  versionId: string;
  updatedTs: number;
  version?: ObjectVersion;
}

/** True if record `a` should replace `b` (same version id). */
export function newer(a: { updatedTs: number; version?: unknown }, b: { updatedTs: number; version?: unknown }): boolean {
  return replicaRecordWins(a.updatedTs, a.version === undefined, b.updatedTs, b.version === undefined);
}

/**
 * Merges what several replicas returned for one key: per version id the winning record. Returns
 * the live versions newest first (ts, then version id, as S3 orders versions) with `isLatest` set
 * on the first, and the tombstones, which a read-repair passes on to replicas that lack them.
 */
export function mergeKeyRecords(lists: { versionId: string; updatedTs: number; version?: ObjectVersion }[][]): {
  versions: ObjectVersion[];
  winners: { versionId: string; updatedTs: number; version?: ObjectVersion }[];
} {
  const best = new Map<string, { versionId: string; updatedTs: number; version?: ObjectVersion }>();
  for (const list of lists) {
    for (const r of list) {
      const cur = best.get(r.versionId);
      if (cur === undefined || newer(r, cur)) best.set(r.versionId, r);
    }
  }
  const winners = [...best.values()];
  const versions = winners.filter((r) => r.version !== undefined).map((r) => ({ ...r.version!, isLatest: false }));
  versions.sort((a, b) => b.ts - a.ts || (a.versionId < b.versionId ? 1 : a.versionId > b.versionId ? -1 : 0));
  if (versions.length > 0) versions[0].isLatest = true;
  return { versions, winners };
}

/** Majority of `n` replicas: what a write needs acknowledged and a read needs answered. */
export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}
