// Access grants of an access key: which buckets it may use, and how far. Pure functions, shared by the
// metadata rows (asserted on write), the admin API (readable refusals) and the S3 layer (checks).
import { globMatch } from '../layout/placement';
import type { AccessGrant, GrantAccess } from './types';

/** More grants than this is a key that should be split (or a glob that should be used). */
export const MAX_GRANTS = 100;

/** Each level includes the ones below it: write implies read, owner implies write. */
export const ACCESS_RANK: Readonly<Record<GrantAccess, number>> = { read: 1, write: 2, owner: 3 };

/** A bucket name or a glob of bucket-name characters with `*` (any run) and `?` (one character). */
const BUCKET_PATTERN_RE = /^[a-z0-9.*?-]{1,63}$/;

/** Everything wrong with a list of grants, as readable sentences; empty when it can be stored. */
export function grantProblems(grants: unknown): string[] {
  if (!Array.isArray(grants)) return ['grants must be a list of {bucket, access}'];
  if (grants.length > MAX_GRANTS) return [`at most ${MAX_GRANTS} grants per key`];
  const problems: string[] = [];
  grants.forEach((g: unknown, i) => {
    if (g === null || typeof g !== 'object' || Array.isArray(g)) return void problems.push(`grants[${i}] must be an object {bucket, access}`);
    const { bucket, access, ...rest } = g as Record<string, unknown>;
    if (typeof bucket !== 'string' || !BUCKET_PATTERN_RE.test(bucket)) {
      problems.push(`grants[${i}].bucket must be a bucket name or a glob of 1-63 characters a-z 0-9 . - * ?`);
    }
    if (typeof access !== 'string' || !(access in ACCESS_RANK)) problems.push(`grants[${i}].access must be read, write or owner`);
    const extra = Object.keys(rest);
    if (extra.length > 0) problems.push(`grants[${i}] has unknown fields: ${extra.slice(0, 5).join(', ')}`);
  });
  return problems;
}

/** The highest access the grants give on `bucket`, or undefined when none matches. */
export function grantedAccess(grants: readonly AccessGrant[], bucket: string): GrantAccess | undefined {
  let best: GrantAccess | undefined;
  for (const g of grants) {
    if (!globMatch(g.bucket, bucket)) continue;
    if (best === undefined || ACCESS_RANK[g.access] > ACCESS_RANK[best]) best = g.access;
    if (best === 'owner') break;
  }
  return best;
}

/** True when `have` includes `need`. */
export function accessIncludes(have: GrantAccess | undefined, need: GrantAccess): boolean {
  return have !== undefined && ACCESS_RANK[have] >= ACCESS_RANK[need];
}
