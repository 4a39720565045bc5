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

/**
 * Runs `run` on every target at once and settles as soon as the outcome is known: resolves once `need`
 * succeeded (with who did and who failed so far), rejects with `fail(...)` once that can no longer
 * happen. Calls still running go on; a failure after the outcome goes to `onLate`. The write side of
 * every quorum: metadata records to a bucket's replicas, buckets and keys to every node.
 */
export function untilEnough<T>(
  targets: readonly T[], need: number | Quorum<T>, run: (t: T) => Promise<unknown>,
  fail: (acked: T[], failed: { target: T; error: Error }[]) => Error,
  onLate?: (t: T, error: Error) => void,
): Promise<{ acked: T[]; failed: { target: T; error: Error }[] }> {
  const acked: T[] = [];
  const failed: { target: T; error: Error }[] = [];
  const q: Quorum<T> = typeof need === 'number' ? countQuorum(targets.length, need) : need;
  if (q.reached([])) return Promise.resolve({ acked, failed });
  let settled = false;
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (settled) return;
      if (q.reached(acked)) {
        settled = true;
        resolve({ acked: [...acked], failed: [...failed] });
      } else if (q.impossible(failed.map((f) => f.target))) {
        settled = true;
        reject(fail([...acked], [...failed]));
      }
    };
    check();
    for (const t of targets) {
      run(t).then(() => {
        acked.push(t);
        check();
      }, (error: Error) => {
        if (settled) onLate?.(t, error);
        else failed.push({ target: t, error });
        check();
      });
    }
  });
}

/** When a set of acknowledgements is enough, and when enough can no longer be had. */
export interface Quorum<T> {
  reached(acked: readonly T[]): boolean;
  impossible(failed: readonly T[]): boolean;
}

function countQuorum<T>(targets: number, need: number): Quorum<T> {
  return { reached: (a) => a.length >= need, impossible: (f) => targets - f.length < need };
}

/**
 * A majority of every one of `sets` (the replica sets of the layouts in use during a transition,
 * docs/decisions/0016): a write acknowledged this way is seen by a majority read under any of them.
 */
export function majorityOfEach<T>(sets: readonly (readonly T[])[]): Quorum<T> {
  return {
    reached: (a) => sets.every((s) => s.filter((t) => a.includes(t)).length >= majority(s.length)),
    impossible: (f) => sets.some((s) => s.length - s.filter((t) => f.includes(t)).length < majority(s.length)),
  };
}

/** Majority of `n` replicas: what a write needs acknowledged and a read needs answered. */
export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}
