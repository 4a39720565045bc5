// The S3 data model in a grid: the node's own MetaStore serves every request, made current from the
// replicas first (quorum read of the key, or of the bucket's differing leaves for a listing), and every
// change is written to a majority of the replicas before it is acknowledged (docs/decisions/0014).
import type { BlobStore } from '../blocks/blob-store';
import type { LayoutNode } from '../layout/types';
import type { AccessKeyReplicaRecord, BucketReplicaRecord, MetaStore } from '../meta/meta-store';
import type { BucketRecord, PartRecord, UploadRecord } from '../meta/types';
import { gridUploadId, UploadHome } from './upload-home';
import type { BlobBackend } from '../model/blob-backend';
import { Store } from '../model/store';
import { RpcError, RpcRoute } from '../rpc';
import type { HybridClock } from '../util/hlc';
import type { Logger } from '../util/logger';
import type { GridRuntime } from './grid';
import { isPeerFailure, peerOf } from './membership';
import { MetaQuorum, QuorumError } from './meta-quorum';
import type { MetaReplica } from './meta-replica';
import { majority, untilEnough, VersionRecord } from './records';

export const BUCKETS_PATH = '/_rpc/buckets';
/** Access keys are kept on every node too, exchanged the same way (docs/decisions/0015-access-grants.md). */
export const ACCESS_KEYS_PATH = '/_rpc/access-keys';
/** Operations on an upload that may have been started through another gateway. */
const MULTIPART_OPERATIONS = new Set(['UploadPart', 'UploadPartCopy', 'CompleteMultipartUpload', 'AbortMultipartUpload', 'ListParts']);
const LIST_OPERATIONS = new Set(['ListObjects', 'ListObjectsV2', 'ListObjectVersions', 'ListMultipartUploads', 'DeleteBucket']);
/** Operations on one key whose handler reads the key's versions. */
const KEY_OPERATIONS = new Set([
  'GetObject', 'HeadObject', 'PutObject', 'DeleteObject', 'CopyObject', 'GetObjectTagging', 'PutObjectTagging', 'DeleteObjectTagging',
  'GetObjectRetention', 'PutObjectRetention', 'GetObjectLegalHold', 'PutObjectLegalHold', 'GetObjectAcl', 'PutObjectAcl',
  'CompleteMultipartUpload', 'UploadPartCopy',
]);

export interface GridStoreDeps {
  grid: GridRuntime;
  quorum: MetaQuorum;
  replica: MetaReplica;
  logger: Logger;
  /** Period of the background pass that pulls buckets and bucket metadata from peers. */
  antiEntropyIntervalMs?: number;
}

export class GridStore extends Store {
  private readonly grid: GridRuntime;
  private readonly quorum: MetaQuorum;
  private readonly replica: MetaReplica;
  private readonly uploads: UploadHome;
  private readonly glog: Logger;
  private timer: NodeJS.Timeout | undefined;
  private passRunning = false;
  private readonly intervalMs: number;
  /**
   * A node that starts without a layout (new in the grid) knows no bucket and no access key: it serves
   * S3 only once it has taken them from a peer. A node that restarts with a layout serves what it had
   * and catches up in the background, as after any outage.
   */
  private caughtUp: boolean;
  /** Last anti-entropy pass, for the admin status. */
  readonly antiEntropy = { passes: 0, recordsTaken: 0, bucketsTaken: 0, accessKeysTaken: 0, lastPassMs: undefined as number | undefined, lastError: undefined as string | undefined };

  constructor(meta: MetaStore, blobs: BlobBackend, clock: HybridClock, deps: GridStoreDeps) {
    super(meta, blobs, deps.logger, clock);
    this.grid = deps.grid;
    this.quorum = deps.quorum;
    this.replica = deps.replica;
    this.glog = deps.logger;
    this.intervalMs = deps.antiEntropyIntervalMs ?? 5_000;
    this.uploads = new UploadHome(meta, deps.grid.layout, deps.grid, deps.logger);
    meta.enableReplication(() => clock.now());
    this.caughtUp = deps.grid.layout.current !== undefined;
    deps.grid.layout.on('change', () => {
      if (!this.caughtUp && this.timer) void this.antiEntropyPass();
    });
  }

  /** Resolves once this node has caught up, or after `maxMs`. */
  whenCaughtUp(maxMs: number): Promise<void> {
    if (this.caughtUp) return Promise.resolve();
    return new Promise((resolve) => {
      const deadline = Date.now() + maxMs;
      const check = (): void => {
        if (this.caughtUp || Date.now() >= deadline) return resolve();
        setTimeout(check, 20);
      };
      check();
    });
  }

  /** Why S3 requests cannot be served yet (a new node still taking buckets and keys), or undefined. */
  catchingUp(): string | undefined {
    return this.caughtUp ? undefined : 'This node joined the grid and is still taking its buckets and access keys from its peers; retry shortly.';
  }

  /** RPC routes: buckets and access keys are kept on every node. */
  routes(): RpcRoute[] {
    return [
      ...this.uploads.routes(),
      { method: 'GET', path: BUCKETS_PATH, handler: () => ({ records: this.meta.bucketRecords() }) },
      {
        method: 'POST', path: BUCKETS_PATH, handler: async (req) => {
          const applied = this.applyBuckets(recordsOf<BucketReplicaRecord>(req.body));
          await this.meta.sync();
          return { applied };
        },
      },
      // Key records carry secrets: they travel only between nodes of the grid (signed RPC), never to a client.
      { method: 'GET', path: ACCESS_KEYS_PATH, handler: () => ({ records: this.meta.accessKeyRecords() }) },
      {
        method: 'POST', path: ACCESS_KEYS_PATH, handler: async (req) => {
          const applied = this.applyAccessKeys(recordsOf<AccessKeyReplicaRecord>(req.body));
          await this.meta.sync();
          return { applied };
        },
      },
    ];
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.antiEntropyPass(), this.intervalMs);
    this.timer.unref();
    if (!this.caughtUp) void this.antiEntropyPass();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  override async prepare(operation: string, bucket?: string, key?: string, headers?: Record<string, string | string[] | undefined>, query?: ReadonlyMap<string, string>): Promise<void> {
    if (bucket === undefined) return;
    const uploadId = query?.get('uploadId');
    if (uploadId !== undefined && MULTIPART_OPERATIONS.has(operation)) await this.uploads.fetch(uploadId);
    if (key !== undefined && KEY_OPERATIONS.has(operation)) await this.syncKey(bucket, key);
    if (LIST_OPERATIONS.has(operation) && this.meta.getBucket(bucket)) await this.syncBucket(bucket);
    const source = copySource(headers?.['x-amz-copy-source']);
    if (source && this.meta.getBucket(source.bucket)) await this.syncKey(source.bucket, source.key);
  }

  /** DeleteObjects names its keys in the body: each is made current before it is deleted. */
  override async deleteObject(bucket: BucketRecord, key: string, versionId: string | undefined, owner: string, bypassGovernance: boolean): Promise<{ versionId?: string; deleteMarker: boolean }> {
    await this.syncKey(bucket.name, key);
    return super.deleteObject(bucket, key, versionId, owner, bypassGovernance);
  }

  protected override async replicateKey(bucket: string, key: string): Promise<void> {
    const records: VersionRecord[] = this.meta.keyRecords(bucket, key).map((r) => ({ bucket, key, versionId: r.versionId, updatedTs: r.updatedTs, version: r.version }));
    try {
      await this.quorum.write(bucket, records);
    } catch (e) {
      // Not acknowledged, so not kept here either: the next request reads the key from the replicas.
      if (!this.quorum.isReplica(bucket)) this.meta.forgetKey(bucket, key);
      throw e;
    }
  }

  protected override newUploadId(): string {
    return gridUploadId(this.grid.layout.nodeId);
  }

  protected override async replicateUpload(u: UploadRecord, change: 'part' | 'gone', part?: PartRecord): Promise<void> {
    await this.uploads.push(u, change, part);
  }

  protected override async replicateBucket(name: string): Promise<void> {
    const rec = this.meta.bucketRecord(name);
    if (rec) await this.pushToEveryNode(BUCKETS_PATH, rec, `bucket ${name}`);
  }

  protected override async replicateAccessKey(accessKeyId: string): Promise<void> {
    const rec = this.meta.accessKeyRecord(accessKeyId);
    if (rec) await this.pushToEveryNode(ACCESS_KEYS_PATH, rec, `access key ${accessKeyId}`);
  }

  /**
   * Sends a record kept on every node to all the others; resolves once a majority of the layout's
   * nodes (this one included) holds it. The rest is sent anyway, and the background pass brings it
   * to nodes that missed it.
   */
  private async pushToEveryNode(path: string, rec: BucketReplicaRecord | AccessKeyReplicaRecord, what: string): Promise<void> {
    const l = this.grid.layout.current;
    const nodes = (l?.nodes ?? []).filter((n) => n.state !== 'failed' && n.id !== this.grid.layout.nodeId);
    const need = majority(nodes.length + 1) - 1; // this node already has it
    await untilEnough(nodes, need, (n) => this.grid.rpc.call(peerOf(n), 'POST', path, { records: [rec] }, { timeoutMs: 10_000 }),
      (acked, failed) => new QuorumError(
        `${what} reached ${acked.length + 1} of ${nodes.length + 1} nodes, ${need + 1} needed (${failed.map((f) => `${f.target.id}: ${f.error.message}`).join('; ')})`,
        acked.length + 1, need + 1,
      ));
  }

  /** Takes the newest record of the key from a majority of its replicas into the local store. */
  private async syncKey(bucket: string, key: string): Promise<void> {
    if (!this.meta.getBucket(bucket)) return; // the handler answers NoSuchBucket
    const { winners } = await this.quorum.readKeyRecords(bucket, key);
    this.applyLocal(winners.map((w) => ({ bucket, key, versionId: w.versionId, updatedTs: w.updatedTs, version: w.version })));
  }

  /**
   * Takes the bucket's records from a majority of `from` (the replicas under an older layout) and
   * makes them durable here: what a node that became a replica of the bucket does in a transition.
   */
  async pullBucketFrom(bucket: string, from: LayoutNode[]): Promise<number> {
    const taken = await this.quorum.pullBucket(bucket, this.replica, async (records) => this.applyLocal(records), from);
    if (taken > 0) await this.meta.sync();
    return taken;
  }

  private async syncBucket(bucket: string): Promise<number> {
    return this.quorum.pullBucket(bucket, this.replica, async (records) => this.applyLocal(records));
  }

  private applyLocal(records: VersionRecord[]): void {
    if (records.length === 0) return;
    this.meta.transaction(() => {
      for (const r of records) {
        this.clock.observe(r.updatedTs);
        if (r.version) {
          this.clock.observe(r.version.ts);
          this.meta.applyVersion(r.version, r.updatedTs);
        } else {
          this.meta.applyTombstone(r.bucket, r.key, r.versionId, r.updatedTs);
        }
      }
    });
  }

  private applyBuckets(records: BucketReplicaRecord[]): number {
    let applied = 0;
    for (const r of records) {
      if (typeof r?.name !== 'string' || !Number.isSafeInteger(r.updatedTs) || r.updatedTs < 0) throw new RpcError(400, 'BadRequest', 'malformed bucket record');
      this.clock.observe(r.updatedTs);
      if (this.meta.applyBucket(r)) {
        applied++;
        this.glog.info(r.bucket ? 'bucket record taken from a peer' : 'bucket deletion taken from a peer', { bucket: r.name, updatedTs: r.updatedTs });
      }
    }
    return applied;
  }

  private applyAccessKeys(records: AccessKeyReplicaRecord[]): number {
    let applied = 0;
    for (const r of records) {
      const ok = r !== null && typeof r === 'object' && typeof r.accessKeyId === 'string' && Number.isSafeInteger(r.updatedTs) && r.updatedTs >= 0
        && (r.key === undefined || r.key.accessKeyId === r.accessKeyId);
      if (!ok) throw new RpcError(400, 'BadRequest', 'malformed access key record');
      this.clock.observe(r.updatedTs);
      if (this.meta.applyAccessKey(r)) {
        applied++;
        this.glog.info(r.key ? 'access key record taken from a peer' : 'access key revocation taken from a peer', { accessKeyId: r.accessKeyId, updatedTs: r.updatedTs });
      }
    }
    return applied;
  }

  /**
   * One background pass: buckets and access keys from a random live peer (every live peer while this
   * node catches up), then, for every bucket whose metadata this
   * node replicates, the records its peers have and it lacks. A site that was down catches up this way
   * even if no client reads its keys.
   */
  private async antiEntropyPass(): Promise<void> {
    if (this.passRunning || this.grid.layout.current === undefined || this.grid.layout.self === undefined) return;
    this.passRunning = true;
    try {
      const others = this.grid.layout.current.nodes.filter((n) => n.id !== this.grid.layout.nodeId && n.state !== 'failed');
      const peers = others.filter((n) => this.grid.rpc.health.isUp(n.id));
      if (others.length === 0) this.caughtUp = true; // alone in the grid: nothing to take
      // A node catching up asks every live peer (one that joined with it may know nothing yet), and
      // serves once a majority of them answered; afterwards one random peer per pass is enough.
      const pick = Math.floor(Math.random() * peers.length);
      const asked = this.caughtUp ? peers.slice(pick, pick + 1) : peers;
      let answered = 0;
      for (const p of asked) {
        try {
          const got = await this.grid.rpc.call<{ records: BucketReplicaRecord[] }>(peerOf(p), 'GET', BUCKETS_PATH, undefined, { timeoutMs: 10_000 });
          const n = this.applyBuckets(got.records);
          const keys = await this.grid.rpc.call<{ records: AccessKeyReplicaRecord[] }>(peerOf(p), 'GET', ACCESS_KEYS_PATH, undefined, { timeoutMs: 10_000 });
          const k = this.applyAccessKeys(keys.records);
          if (n + k > 0) await this.meta.sync();
          this.antiEntropy.bucketsTaken += n;
          this.antiEntropy.accessKeysTaken += k;
          answered++;
        } catch (e) {
          if (this.caughtUp) throw e;
        }
      }
      if (!this.caughtUp && others.length > 0 && answered >= majority(others.length)) {
        this.glog.info('buckets and access keys taken from the peers; serving', { peersAnswered: answered, peers: others.length });
        this.caughtUp = true;
      }
      for (const b of this.meta.listBuckets()) {
        if (!this.quorum.isReplica(b.name)) continue;
        const taken = await this.syncBucket(b.name);
        if (taken > 0) {
          await this.meta.sync();
          this.antiEntropy.recordsTaken += taken;
          this.glog.info('anti-entropy took records from replicas', { bucket: b.name, records: taken });
        }
      }
      this.antiEntropy.passes++;
      this.antiEntropy.lastPassMs = Date.now();
      this.antiEntropy.lastError = undefined;
    } catch (e) {
      this.antiEntropy.lastError = (e as Error).message;
      if (!isPeerFailure(e) && !(e instanceof QuorumError)) this.glog.warn('anti-entropy pass failed', { error: (e as Error).message });
    } finally {
      this.passRunning = false;
    }
  }
}

/** The `records` list of a body that replicates records kept on every node (bounded). */
function recordsOf<T>(body: unknown): T[] {
  const records = (body as { records?: T[] } | undefined)?.records;
  if (!Array.isArray(records) || records.length > 10_000) throw new RpcError(400, 'BadRequest', 'records must be a list of at most 10000');
  return records;
}

/** Bucket and key of an x-amz-copy-source header (`/bucket/key?versionId=…`, URL-encoded). */
function copySource(h: string | string[] | undefined): { bucket: string; key: string } | undefined {
  if (typeof h !== 'string') return undefined;
  let v = h.split('?')[0];
  try {
    v = decodeURIComponent(v);
  } catch {
    return undefined;
  }
  if (v.startsWith('/')) v = v.slice(1);
  const i = v.indexOf('/');
  if (i <= 0 || i === v.length - 1) return undefined;
  return { bucket: v.slice(0, i), key: v.slice(i + 1) };
}

export type { BlobStore };
