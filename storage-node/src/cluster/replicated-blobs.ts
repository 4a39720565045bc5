// The grid's blob backend: a blob is written to the nodes its policy places it on, at once, and read
// from the nearest copy, moving to the next one on any error, also in the middle of a body.
import { randomBytes } from 'node:crypto';
import { PassThrough, Readable, Writable } from 'node:stream';
import type { BlobStore } from '../blocks/blob-store';
import { dataPlacement, readCandidates } from '../layout/placement';
import type { IngestMode, LayoutNode } from '../layout/types';
import type { BlobRef } from '../meta/types';
import type { BlobBackend, BlobPlace, BlobSink } from '../model/blob-backend';
import { RpcClient } from '../rpc';
import { Logger, silentLogger } from '../util/logger';
import { blobPathOf, blobUploadPathOf, BlobPutReply, isBlobMissing } from './blob-replica';
import type { LayoutState } from './layout-state';
import { isPeerFailure, peerOf } from './membership';
import type { RepairItem, RepairQueue } from './repair-queue';
import type { BlobPlaces } from './blob-places';
import type { WriteEpochs } from './write-epochs';

/**
 * The version id of a blob repair item: a copy is owed for the blob, whatever version references it
 * (the version id is chosen after the data is durable).
 */
export const BLOB_ITEM_VERSION = '*';

/** Not enough copies could be made for the policy: the write is refused (503 for the client). */
export class InsufficientCopiesError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InsufficientCopiesError';
  }
}

export interface ReplicatedBlobsOptions {
  logger?: Logger;
  /** Bytes buffered per remote copy before the upload waits for the slowest replica. */
  highWaterMarkBytes?: number;
  /** Writes in flight by layout version (a transition waits for the old ones to end). */
  epochs?: WriteEpochs;
}

/** Copies that must be durable before the write is acknowledged, for `placed` copies under `ingest`. */
export function requiredCopies(ingest: IngestMode, placed: number): number {
  if (ingest === 'strict') return placed;
  return Math.min(2, placed);
}

interface Copy {
  node: LayoutNode;
  /** A copy for an owner under an older layout still in use: made if it can be, never required or owed. */
  extra?: boolean;
  sink: Writable;
  /** Resolves with the size the copy holds once durable. */
  done: Promise<number>;
  failed?: string;
}

/**
 * Writes every placed copy in parallel from one pass over the body (backpressure follows the slowest
 * live copy; memory is bounded by one high-water mark per copy). A copy that fails is dropped and the
 * write goes on while the policy can still be met; commit() waits for every copy still alive, then
 * queues the missing ones (durably) before resolving. `strict` needs every copy.
 */
class FanoutWriter extends Writable implements BlobSink {
  readonly id = randomBytes(16).toString('hex');
  private copies: Copy[] = [];
  private bytes = 0;
  private commitPromise: Promise<BlobRef> | undefined;
  private aborted = false;

  constructor(
    private readonly owner: ReplicatedBlobs,
    private readonly place: BlobPlace,
    private readonly targets: LayoutNode[],
    private readonly deferred: LayoutNode[],
    private readonly ingest: IngestMode,
    private readonly partition: number,
    private readonly extras: LayoutNode[] = [],
    private readonly endEpoch: () => void = () => undefined,
  ) {
    super({ highWaterMark: 1024 * 1024 });
  }

  override _construct(callback: (error?: Error | null) => void): void {
    try {
      this.copies = [
        ...this.targets.map((n) => this.owner.openCopy(n, this.id, this.place)),
        ...this.extras.map((n) => ({ ...this.owner.openCopy(n, this.id, this.place), extra: true })),
      ];
      for (const c of this.copies) {
        c.done.catch((e: Error) => this.dropCopy(c, e.message));
        c.sink.on('error', (e: Error) => this.dropCopy(c, e.message));
      }
      this.checkEnough();
      callback();
    } catch (e) {
      callback(e as Error);
    }
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.bytes += chunk.length;
    const waits: Promise<void>[] = [];
    for (const c of this.copies) {
      if (c.failed !== undefined) continue;
      // A copy whose stream closed (its peer refused at once) is dropped before its promise says why.
      if (c.sink.destroyed) {
        this.dropCopy(c, 'copy stream closed');
        continue;
      }
      if (!c.sink.write(chunk) && !c.sink.destroyed) waits.push(new Promise<void>((resolve) => {
        const go = (): void => {
          c.sink.off('drain', go);
          c.sink.off('close', go);
          resolve();
        };
        c.sink.once('drain', go);
        c.sink.once('close', go);
      }));
    }
    const enough = this.checkEnoughError();
    if (enough) return callback(enough);
    if (waits.length === 0) return callback();
    Promise.all(waits).then(() => callback(this.checkEnoughError()), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    for (const c of this.copies) if (c.failed === undefined) c.sink.end();
    callback();
  }

  commit(): Promise<BlobRef> {
    this.commitPromise ??= this.doCommit().finally(this.endEpoch);
    return this.commitPromise;
  }

  async abort(): Promise<void> {
    if (this.aborted) return;
    this.aborted = true;
    this.endEpoch();
    if (this.commitPromise !== undefined && (await this.commitPromise.then(() => true, () => false))) return;
    for (const c of this.copies) c.sink.destroy(new Error('upload aborted'));
    await Promise.all(this.copies.map((c) => c.done.catch(() => undefined)));
    // Copies that got durable before the abort are now garbage.
    await Promise.all(this.copies.map((c) => this.owner.deleteCopy(c.node, this.id).catch(() => undefined)));
    if (!this.destroyed) this.destroy();
  }

  private async doCommit(): Promise<BlobRef> {
    const results = await Promise.allSettled(this.copies.map((c) => c.done));
    const good: LayoutNode[] = [];
    const missing: { node: LayoutNode; error: string }[] = [];
    results.forEach((r, i) => {
      const c = this.copies[i];
      if (c.extra) return;
      if (r.status === 'fulfilled' && r.value === this.bytes && c.failed === undefined) good.push(c.node);
      else missing.push({ node: c.node, error: r.status === 'rejected' ? String((r.reason as Error).message) : c.failed ?? `holds ${r.value} of ${this.bytes} bytes` });
    });
    const need = requiredCopies(this.ingest, this.targets.length);
    if (good.length < need || good.length === 0) {
      throw new InsufficientCopiesError(
        `${good.length} of ${this.targets.length} copies made, the ${this.ingest} policy needs ${need} (${missing.map((m) => `${m.node.id}: ${m.error}`).join('; ')})`,
      );
    }
    const owed = [...missing.map((m) => m.node), ...this.deferred];
    if (owed.length > 0) await this.owner.owe(owed, this.place, this.id, this.bytes, this.partition, missing);
    return { id: this.id, size: this.bytes };
  }

  private dropCopy(c: Copy, error: string): void {
    if (c.failed !== undefined) return;
    c.failed = error;
    if (!c.sink.destroyed) c.sink.destroy();
  }

  private checkEnoughError(): Error | undefined {
    const alive = this.copies.filter((c) => c.failed === undefined && !c.extra).length;
    const need = requiredCopies(this.ingest, this.targets.length);
    if (alive >= Math.max(1, need)) return undefined;
    const why = this.copies.filter((c) => c.failed !== undefined && !c.extra).map((c) => `${c.node.id}: ${c.failed}`).join('; ');
    return new InsufficientCopiesError(`only ${alive} of ${this.targets.length} copies can still be made, the ${this.ingest} policy needs ${need} (${why})`);
  }

  private checkEnough(): void {
    const e = this.checkEnoughError();
    if (e) throw e;
  }
}

export class ReplicatedBlobs implements BlobBackend {
  private readonly log: Logger;
  private readonly hwm: number;
  private readonly epochs: WriteEpochs | undefined;

  constructor(
    private readonly layout: LayoutState,
    private readonly rpc: RpcClient,
    private readonly local: BlobStore,
    private readonly repair: RepairQueue,
    opts: ReplicatedBlobsOptions = {},
    private readonly places?: BlobPlaces,
  ) {
    this.log = opts.logger ?? silentLogger();
    this.hwm = opts.highWaterMarkBytes ?? 1024 * 1024;
    this.epochs = opts.epochs;
  }

  createWriter(place: BlobPlace): BlobSink {
    const l = this.layout.current;
    if (l === undefined) throw new InsufficientCopiesError('this node has no layout');
    const placed = dataPlacement(l, place.bucket, place.key, place.policy);
    const nodes = placed.copies.flatMap((c) => c.nodes);
    const wanted = placed.copies.reduce((n, c) => n + c.wanted, 0);
    if (placed.policy.ingest === 'strict' && nodes.length < wanted) {
      throw new InsufficientCopiesError(`policy ${placed.policy.name} asks for ${wanted} copies, the layout has ${nodes.length} nodes for them`);
    }
    // Healthy nodes of the gateway's own site first, so that dualCommit's two synchronous copies are near.
    const own = this.layout.self?.site;
    const ordered = [...nodes].sort((a, b) => rank(a, own, this.rpc) - rank(b, own, this.rpc));
    const sync = placed.policy.ingest === 'dualCommit' ? ordered.slice(0, 2) : ordered;
    const deferred = placed.policy.ingest === 'dualCommit' ? ordered.slice(2) : [];
    // Refused before a byte of the body is read when the nodes known to be down already make the
    // policy unreachable: the client gets a clean 503 instead of a connection cut mid-upload.
    const need = requiredCopies(placed.policy.ingest, sync.length);
    const down = sync.filter((n) => !this.isUp(n));
    if (sync.length - down.length < need) {
      throw new InsufficientCopiesError(`policy ${placed.policy.name} (${placed.policy.ingest}) needs ${need} of ${sync.length} copies; down: ${down.map((n) => n.id).join(', ')}`);
    }
    // During a transition the owners under the older layouts still in use get a copy too (best effort):
    // whichever layout the transition ends on, the copy is where it expects it.
    const extras = this.oldOwners(place, new Set(nodes.map((n) => n.id)));
    const end = this.epochs?.begin(l.version);
    return new FanoutWriter(this, place, sync, deferred, placed.policy.ingest, placed.partition, extras, end);
  }

  /** Owners of a place under the open older layouts that the current placement does not name (live ones). */
  private oldOwners(place: BlobPlace, taken: Set<string>): LayoutNode[] {
    const current = this.layout.current!;
    const out: LayoutNode[] = [];
    for (const old of this.layout.open) {
      for (const n of dataPlacement(old, place.bucket, place.key, place.policy).copies.flatMap((c) => c.nodes)) {
        const now = current.nodes.find((x) => x.id === n.id);
        if (taken.has(n.id) || now === undefined || now.state === 'failed' || !this.isUp(now)) continue;
        taken.add(n.id);
        out.push(now);
      }
    }
    return out;
  }

  openReader(ref: BlobRef, place: BlobPlace, range: { start: number; endInclusive: number }): Readable {
    const l = this.layout.current;
    if (l === undefined) throw new Error('this node has no layout');
    const candidates = readCandidates(l, place.bucket, place.key, this.layout.self?.site ?? '', { boundPolicy: place.policy, previous: this.layout.open });
    const self = this;
    async function* gen(): AsyncGenerator<Buffer> {
      let offset = range.start;
      const errors: string[] = [];
      // Live peers first; a peer marked down is still tried last, in case it is the only holder.
      const order = [...candidates].sort((a, b) => Number(!self.isUp(a)) - Number(!self.isUp(b)));
      for (const n of order) {
        if (offset > range.endInclusive) return;
        let stream: Readable | undefined;
        try {
          stream = await self.openCopyReader(n, ref.id, { start: offset, endInclusive: range.endInclusive });
          for await (const chunk of stream) {
            offset += (chunk as Buffer).length;
            yield chunk as Buffer;
          }
          if (offset > range.endInclusive) return;
          errors.push(`${n.id}: ended early at byte ${offset}`);
        } catch (e) {
          const msg = (e as Error).message;
          errors.push(`${n.id}: ${msg}`);
          // A copy that is reachable but fails (a corrupt chunk cuts the body) is queued for a check:
          // the repair verifies it and replaces it from a good copy if it is bad.
          // A copy missing on a new owner during a transition is being moved, not damaged.
          const moving = self.layout.open.length > 0 && isBlobMissing(e);
          if (!isPeerFailure(e) && !moving) {
            self.log.warn('blob copy read failed, trying the next copy', { blobId: ref.id, node: n.id, offset, error: msg });
            self.queueCheck(n.id, ref, place, 'read failed');
          }
        } finally {
          stream?.destroy();
        }
      }
      throw new Error(`no copy of blob ${ref.id} could be read from byte ${offset} (${errors.join('; ') || 'no holder in the layout'})`);
    }
    return Readable.from(gen(), { objectMode: false, highWaterMark: 1 });
  }

  async delete(ref: BlobRef, place: BlobPlace): Promise<void> {
    const l = this.layout.current;
    if (l === undefined) return;
    const holders = readCandidates(l, place.bucket, place.key, '', { boundPolicy: place.policy, previous: this.layout.open });
    await Promise.all(holders.map((n) => this.deleteCopy(n, ref.id).catch((e: Error) => {
      // Left behind: garbage collection of copies nobody references is still to be built (see the note in main.ts).
      this.log.warn('blob copy delete failed', { blobId: ref.id, node: n.id, error: e.message });
    })));
  }

  /** @internal A copy being written on `node`: a local writer or a streamed upload. */
  openCopy(node: LayoutNode, id: string, place: BlobPlace): Copy {
    if (node.id === this.layout.nodeId) {
      const w = this.local.createWriter({ id });
      const done = new Promise<number>((resolve, reject) => {
        w.once('finish', () => w.commit().then((r) => {
          this.places?.record(id, place, r.size);
          resolve(r.size);
        }, reject));
        w.once('error', reject);
      });
      return { node, sink: w, done };
    }
    const pipe = new PassThrough({ highWaterMark: this.hwm });
    const done = this.rpc.stream(peerOf(node), 'PUT', blobUploadPathOf(id, undefined, place), pipe).then((r) => {
      if (r.status !== 200) throw new Error(`status ${r.status}`);
      return (r.json as BlobPutReply).size;
    });
    return { node, sink: pipe, done };
  }

  /** @internal */
  async deleteCopy(node: LayoutNode, id: string): Promise<void> {
    if (node.id === this.layout.nodeId) {
      this.places?.forget(id);
      return this.local.delete(id);
    }
    await this.rpc.call(peerOf(node), 'DELETE', blobPathOf(id), undefined, { timeoutMs: 10_000 });
  }

  /** @internal Queues the copies that could not be made now, durably, before the write is acknowledged. */
  async owe(nodes: LayoutNode[], place: BlobPlace, id: string, size: number, partition: number, why: { node: LayoutNode; error: string }[]): Promise<void> {
    const items: RepairItem[] = nodes.map((n) => ({ kind: 'blob', target: n.id, bucket: place.bucket, key: place.key, versionId: BLOB_ITEM_VERSION, blobId: id, partition, sizeBytes: size }));
    this.repair.enqueue(items);
    await this.repair.sync();
    this.log.info('copies owed', { blobId: id, bucket: place.bucket, targets: nodes.map((n) => n.id), reasons: why.map((w) => `${w.node.id}: ${w.error}`) });
  }

  private async openCopyReader(n: LayoutNode, id: string, range: { start: number; endInclusive: number }): Promise<Readable> {
    if (n.id === this.layout.nodeId) return this.local.openReader(id, range);
    const res = await this.rpc.fetchStream(peerOf(n), 'GET', `${blobPathOf(id)}?start=${range.start}&end=${range.endInclusive}`);
    return res.body;
  }

  /**
   * Queues a check of the copy of `ref` on node `target` (a read failed on it, or the scrubber found it
   * corrupt): the repair worker verifies it and, if it is bad, replaces it from a good copy. A size of 0
   * means unknown (the footer may be what is damaged).
   */
  queueCheck(target: string, ref: BlobRef, place: BlobPlace, reason: string): void {
    const l = this.layout.current;
    const partition = l ? dataPlacement(l, place.bucket, place.key, place.policy).partition : 0;
    try {
      this.repair.enqueue([{ kind: 'corrupt', target, bucket: place.bucket, key: place.key, versionId: BLOB_ITEM_VERSION, blobId: ref.id, partition, sizeBytes: ref.size }]);
      void this.repair.sync().then(() => this.repair.kick(target), () => undefined);
      this.log.error('blob copy check and repair queued', { blobId: ref.id, node: target, bucket: place.bucket, reason });
    } catch (e) {
      this.log.error('blob copy check could not be queued', { blobId: ref.id, node: target, reason, error: (e as Error).message });
    }
  }

  private isUp(n: LayoutNode): boolean {
    return n.id === this.layout.nodeId || this.rpc.health.isUp(n.id);
  }
}

function rank(n: LayoutNode, ownSite: string | undefined, rpc: RpcClient): number {
  return (rpc.health.isUp(n.id) ? 0 : 2) + (n.site === ownSite ? 0 : 1);
}
