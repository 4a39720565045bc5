// The replica side of metadata replication: RPC routes over this node's MetaStore, and the same
// operations as a local object so that a gateway that is itself a replica skips the network.
import type { MetaStore } from '../meta/meta-store';
import type { ObjectVersion } from '../meta/types';
import { RpcError, RpcRoute } from '../rpc';
import type { VersionRecord } from './records';

export const META_PATHS = {
  apply: '/_rpc/meta/apply',
  key: '/_rpc/meta/key',
  digests: '/_rpc/meta/digests',
  leaf: '/_rpc/meta/leaf',
} as const;

/** Records per apply call: bounds the JSON body and the transaction. */
export const MAX_RECORDS_PER_APPLY = 1000;

export interface KeyRecordsReply {
  records: { versionId: string; updatedTs: number; version?: ObjectVersion }[];
}

/** What a replica does with records; `blobsFreed` receives blobs no version references any more. */
export class MetaReplica {
  constructor(private readonly meta: MetaStore, private readonly blobsFreed: (ids: string[]) => void = () => undefined) {}

  /** Applies records (last writer wins) and resolves once they are durable. Per record: applied or not. */
  async apply(records: VersionRecord[]): Promise<boolean[]> {
    if (!Array.isArray(records) || records.length > MAX_RECORDS_PER_APPLY) {
      throw new RpcError(400, 'BadRequest', `records must be a list of at most ${MAX_RECORDS_PER_APPLY}`);
    }
    const freed: string[] = [];
    const applied = this.meta.transaction(() => records.map((r) => {
      assertRecord(r);
      if (this.meta.getBucket(r.bucket) === undefined) throw new RpcError(404, 'NoSuchBucket', `bucket ${r.bucket} is not known here`);
      if (r.version !== undefined) {
        const out = this.meta.applyVersion(r.version, r.updatedTs);
        if (out.replaced) freed.push(...unusedBlobs(out.replaced, r.version));
        return out.applied;
      }
      const out = this.meta.applyTombstone(r.bucket, r.key, r.versionId, r.updatedTs);
      if (out.removed) freed.push(...out.removed.blobs.map((b) => b.id));
      return out.applied;
    }));
    await this.meta.sync();
    if (freed.length > 0) this.blobsFreed(freed.filter((id) => !this.meta.isBlobReferenced(id)));
    return applied;
  }

  recordTs(bucket: string, key: string, versionId: string): { updatedTs: number; deleted: boolean } | undefined {
    return this.meta.recordTs(bucket, key, versionId);
  }

  keyRecords(bucket: string, key: string): KeyRecordsReply {
    return { records: this.meta.keyRecords(bucket, key) };
  }

  digests(bucket: string): { leaves: string[] } {
    return { leaves: this.meta.recordDigests(bucket) };
  }

  /** The records of several leaves, from one scan. */
  leaves(bucket: string, leaves: unknown): { records: { key: string; versionId: string; updatedTs: number; deleted: boolean }[] } {
    if (!Array.isArray(leaves) || leaves.length > 256 || !leaves.every((l) => Number.isInteger(l) && l >= 0 && l <= 255)) {
      throw new RpcError(400, 'BadRequest', 'leaves must be a list of leaf numbers 0..255');
    }
    return { records: this.meta.leavesRecords(bucket, leaves as number[]) };
  }

  routes(): RpcRoute[] {
    const body = (req: { body: unknown }): Record<string, unknown> => {
      if (req.body === null || typeof req.body !== 'object') throw new RpcError(400, 'BadRequest', 'a JSON object body is required');
      return req.body as Record<string, unknown>;
    };
    const str = (o: Record<string, unknown>, k: string): string => {
      const v = o[k];
      if (typeof v !== 'string' || v.length === 0) throw new RpcError(400, 'BadRequest', `${k} must be a non-empty string`);
      return v;
    };
    return [
      { method: 'POST', path: META_PATHS.apply, handler: async (req) => ({ applied: await this.apply(body(req).records as VersionRecord[]) }) },
      { method: 'POST', path: META_PATHS.key, handler: (req) => { const b = body(req); return this.keyRecords(str(b, 'bucket'), str(b, 'key')); } },
      { method: 'POST', path: META_PATHS.digests, handler: (req) => this.digests(str(body(req), 'bucket')) },
      {
        method: 'POST', path: META_PATHS.leaf, handler: (req) => {
          const b = body(req);
          return this.leaves(str(b, 'bucket'), b.leaves);
        },
      },
    ];
  }
}

function assertRecord(r: VersionRecord): void {
  const ok = r !== null && typeof r === 'object' && typeof r.bucket === 'string' && typeof r.key === 'string'
    && typeof r.versionId === 'string' && Number.isSafeInteger(r.updatedTs) && r.updatedTs > 0
    && (r.version === undefined || (r.version.bucket === r.bucket && r.version.key === r.key && r.version.versionId === r.versionId));
  if (!ok) throw new RpcError(400, 'BadRequest', 'malformed version record');
}

/** Blobs of `old` that `next` (same version id, rewritten) does not use. */
function unusedBlobs(old: ObjectVersion, next: ObjectVersion): string[] {
  const keep = new Set(next.blobs.map((b) => b.id));
  return old.blobs.map((b) => b.id).filter((id) => !keep.has(id));
}
