// Layout transitions on one node (docs/decisions/0016-layout-transitions.md): when a new layout
// moves partitions, this node copies in what it gained from the owners under the older layouts,
// tells its peers when it is done, retires the old versions once every node is, and then hands off
// and removes the copies it no longer owns. A draining node ends with nothing, and says so.
import fs from 'node:fs';
import path from 'node:path';
import { Readable, Transform, TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { RebalanceStatus } from '../admin/api-types';
import type { BlobStore } from '../blocks/blob-store';
import { isBlobCorrupt } from '../blocks/blob-store';
import { dataPlacement, metaPlacement, placeCopies, policyFor, siteDepths, topActive } from '../layout/placement';
import type { Layout, LayoutNode } from '../layout/types';
import type { BlobPlace } from '../model/blob-backend';
import { RpcClient, RpcError, RpcRoute } from '../rpc';
import { writeFileAtomic } from '../util/files';
import { Logger, silentLogger } from '../util/logger';
import { blobPathOf, blobUploadPathOf, BlobPutReply, isBlobMissing } from './blob-replica';
import { BlobPlaces, MAX_PLACES_PAGE, PlacedBlob } from './blob-places';
import type { LayoutState } from './layout-state';
import { isPeerFailure, Membership, peerOf } from './membership';
import type { WriteEpochs } from './write-epochs';

export const TRANSITION_PATH = '/_rpc/transition';
export const PLACES_LIST_PATH = '/_rpc/places/list';
export const PLACES_SIZES_PATH = '/_rpc/places/sizes';
export const BLOBS_HAVE_PATH = '/_rpc/blobs/have';

/** What a node tells its peers about its part in the transition to its current layout. */
export interface TransitionInfo {
  /** The layout version it serves under. */
  version: number;
  /** The version all its writes use: lower while writes started under an older layout still run. */
  ack: number;
  /** The newest version whose gained partitions and buckets it has copied in. */
  synced: number;
  retiredBelow: number;
  open: number[];
  /** True once it reads from the current layout's metadata replicas. */
  readsCurrent: boolean;
}

export interface RebalanceOptions {
  /** Bandwidth bound of the copies this node makes (in and out), bytes per second; 0 for none. */
  maxBytesPerSecond: number;
  /** Blob copies made at once. */
  concurrency: number;
  /** Period of the transition check. */
  tickMs?: number;
  logger?: Logger;
}

export interface RebalanceDeps {
  layout: LayoutState;
  membership: Membership;
  rpc: RpcClient;
  blobs: BlobStore;
  places: BlobPlaces;
  epochs: WriteEpochs;
  dataDir: string;
  /** Names of the buckets this node knows (every node knows every bucket). */
  bucketNames: () => string[];
  /** The policy bound to a bucket, if any. */
  policyOf: (bucket: string) => string | undefined;
  /** Takes a bucket's records from a majority of `from` into this node's metadata, durably. */
  pullBucket: (bucket: string, from: LayoutNode[]) => Promise<number>;
  /** Copies this node, as a gateway, still owes to others (a drained node must owe nothing). */
  owedItems: () => number;
}

/** Persisted in <dataDir>/rebalance.json so that a restarted node resumes where it was. */
interface Progress {
  version: number;
  synced: number;
  /** Open versions the sync to `synced` was made against. */
  syncedAgainst: number[];
  donePartitions: number[];
  doneBuckets: string[];
  partitionsToMove: number;
  bucketsToSync: number;
  bytesToMove: number;
  bytesMoved: number;
  cleanupPending: boolean;
}

const BATCH_PARTITIONS = 128;
const PEER_TIMEOUT_MS = 3_000;
const CLEANUP_RETRY_MS = 5_000;
/** How often an idle node checks that it holds only copies it owns. */
const OWNERSHIP_CHECK_MS = 10_000;
const OWNED_CACHE_MS = 2_000;

/** A token bucket: `take(n)` waits until n bytes may pass. */
export class Throttle {
  private tokens: number;
  private last = Date.now();

  constructor(readonly bytesPerSecond: number) {
    this.tokens = bytesPerSecond;
  }

  async take(n: number): Promise<void> {
    if (this.bytesPerSecond <= 0) return;
    for (;;) {
      const now = Date.now();
      this.tokens = Math.min(this.bytesPerSecond, this.tokens + ((now - this.last) / 1000) * this.bytesPerSecond);
      this.last = now;
      // A chunk larger than a second's worth passes once the bucket is full, then leaves it in debt.
      if (this.tokens >= Math.min(n, this.bytesPerSecond)) {
        this.tokens -= n;
        return;
      }
      const waitMs = ((Math.min(n, this.bytesPerSecond) - this.tokens) / this.bytesPerSecond) * 1000;
      await new Promise((r) => setTimeout(r, Math.max(1, Math.ceil(waitMs))));
    }
  }

  /** A pass-through stream that moves no faster than the bucket allows. */
  stream(onBytes?: (n: number) => void): Transform {
    const self = this;
    return new Transform({
      transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
        self.take(chunk.length).then(() => {
          onBytes?.(chunk.length);
          cb(null, chunk);
        }, cb);
      },
    });
  }
}

export class Rebalancer {
  private readonly log: Logger;
  private readonly file: string;
  private readonly throttle: Throttle;
  private progress: Progress;
  private phase: RebalanceStatus['phase'] = 'idle';
  private waitingFor: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private stopped = false;
  private nextCleanupMs = 0;
  private nextCheckMs = 0;
  private readonly rate: { t: number; bytes: number }[] = [];
  private ownedCache: { atMs: number; version: number; held: number; owned: number } | undefined;

  constructor(private readonly d: RebalanceDeps, private readonly opts: RebalanceOptions) {
    this.log = opts.logger ?? silentLogger();
    this.file = path.join(d.dataDir, 'rebalance.json');
    this.throttle = new Throttle(opts.maxBytesPerSecond);
    this.progress = this.load();
    d.layout.on('history', () => this.checkSyncedAgainst());
  }

  routes(): RpcRoute[] {
    return [
      { method: 'GET', path: TRANSITION_PATH, handler: () => this.info() },
      {
        method: 'POST', path: PLACES_LIST_PATH, handler: (req) => {
          const b = req.body as { partitions?: unknown; partitionCount?: unknown; after?: { hash16?: unknown; id?: unknown }; limit?: unknown } | undefined;
          const { partitions, partitionCount } = partitionsOf(b);
          const after = b?.after === undefined ? undefined : { hash16: Number(b.after.hash16), id: String(b.after.id) };
          if (after && (!Number.isInteger(after.hash16) || after.id.length > 64)) throw new RpcError(400, 'BadRequest', 'after must be { hash16, id }');
          const limit = Number(b?.limit ?? MAX_PLACES_PAGE);
          return { blobs: this.d.places.list(partitions, partitionCount, after, Number.isInteger(limit) ? limit : MAX_PLACES_PAGE) };
        },
      },
      {
        method: 'POST', path: PLACES_SIZES_PATH, handler: (req) => {
          const { partitions, partitionCount } = partitionsOf(req.body as never);
          return { sizes: [...this.d.places.sizes(partitions, partitionCount)].map(([p, s]) => ({ partition: p, ...s })) };
        },
      },
      {
        method: 'POST', path: BLOBS_HAVE_PATH, handler: async (req) => {
          const ids = (req.body as { ids?: unknown } | undefined)?.ids;
          if (!Array.isArray(ids) || ids.length > MAX_PLACES_PAGE || ids.some((x) => typeof x !== 'string' || !/^[0-9a-f]{32}$/.test(x))) {
            throw new RpcError(400, 'BadRequest', `ids must be a list of at most ${MAX_PLACES_PAGE} blob ids`);
          }
          return { have: await Promise.all((ids as string[]).map((id) => this.localHas(id))) };
        },
      },
    ];
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.tick(), this.opts.tickMs ?? 1_000);
    this.timer.unref();
    void this.tick();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  info(): TransitionInfo {
    const version = this.d.layout.version;
    return {
      version,
      ack: this.d.epochs.ack(version),
      synced: this.d.layout.open.length === 0 ? version : this.progress.synced,
      retiredBelow: this.d.layout.retiredBelow,
      open: this.d.layout.open.map((l) => l.version),
      readsCurrent: this.d.layout.readsCurrent,
    };
  }

  status(): RebalanceStatus {
    const p = this.progress;
    const bps = this.bytesPerSecond();
    const left = Math.max(0, p.bytesToMove - p.bytesMoved);
    const { held, owned } = this.ownership();
    const self = this.d.layout.self;
    const open = this.d.layout.open.map((l) => l.version);
    return {
      layoutVersion: this.d.layout.version,
      openVersions: open,
      phase: this.phase,
      partitionsToMove: p.partitionsToMove,
      partitionsMoved: p.donePartitions.length,
      bucketsToSync: p.bucketsToSync,
      bucketsSynced: p.doneBuckets.length,
      bytesToMove: p.bytesToMove,
      bytesMoved: p.bytesMoved,
      bytesPerSecond: Math.round(bps),
      etaSeconds: this.phase === 'copying' && bps > 0 ? Math.ceil(left / bps) : this.phase === 'copying' ? null : 0,
      maxBytesPerSecond: this.opts.maxBytesPerSecond,
      heldBlobs: held,
      ownedBlobs: owned,
      drained: self?.state === 'draining' && open.length === 0 && held === 0 && !p.cleanupPending && this.d.owedItems() === 0,
      waitingFor: this.waitingFor,
    };
  }

  // ---- the transition ---------------------------------------------------------------------------

  private async tick(): Promise<void> {
    if (this.running || this.stopped) return;
    this.running = true;
    try {
      await this.step();
    } catch (e) {
      const msg = (e as Error).message;
      if (isPeerFailure(e)) this.log.debug('rebalance step waits for a peer', { error: msg });
      else this.log.warn('rebalance step failed; retried', { error: msg });
    } finally {
      this.running = false;
    }
  }

  private async step(): Promise<void> {
    const cur = this.d.layout.current;
    const self = this.d.layout.self;
    if (cur === undefined || self === undefined) return;
    if (this.progress.version !== cur.version) this.resetFor(cur.version);
    const peers = cur.nodes.filter((n) => n.id !== self.id && n.state !== 'failed');
    const poll = (): Promise<(TransitionInfo | undefined)[]> => Promise.all(peers.map((n) => this.d.rpc.call<TransitionInfo>(peerOf(n), 'GET', TRANSITION_PATH, undefined, { timeoutMs: PEER_TIMEOUT_MS })
      .catch(() => undefined)));
    if (this.d.layout.open.length === 0) {
      // Copies that arrived after a clean-up (a write still in flight under an old layout) are found here.
      if (!this.progress.cleanupPending && Date.now() >= this.nextCheckMs) {
        this.nextCheckMs = Date.now() + OWNERSHIP_CHECK_MS;
        const { held, owned } = this.ownership();
        if (held > owned) this.progress.cleanupPending = true;
      }
      if (this.progress.cleanupPending && Date.now() >= this.nextCleanupMs) {
        // Nodes that have not retired the old versions still send their owners copies: wait for them.
        const infos = await poll();
        const behind = peers.filter((n, i) => !infos[i] || infos[i]!.version !== cur.version || infos[i]!.open.length > 0).map((n) => n.id);
        this.waitingFor = behind;
        if (behind.length === 0) {
          this.phase = 'cleaning';
          await this.cleanup(cur);
        }
      } else {
        this.waitingFor = [];
      }
      this.phase = this.progress.cleanupPending ? 'cleaning' : 'idle';
      return;
    }
    const infos = await poll();
    // Older versions a peer still uses and this node does not know (it joined or came back late).
    const mine = new Set(this.d.layout.open.map((l) => l.version));
    for (let i = 0; i < peers.length; i++) {
      const info = infos[i];
      if (!info) continue;
      const unknown = info.open.some((v) => v >= this.d.layout.retiredBelow && v < cur.version && !mine.has(v));
      const readsAhead = info.version === cur.version && info.readsCurrent && !this.d.layout.readsCurrent && info.open.length > 0;
      if (unknown || readsAhead || info.retiredBelow > this.d.layout.retiredBelow || info.version > cur.version) {
        await this.d.membership.pullFrom(peerOf(peers[i])).catch(() => undefined);
        return; // start again with what was learnt
      }
    }
    const notAcked = peers.filter((n, i) => !infos[i] || infos[i]!.version < cur.version || infos[i]!.ack < cur.version).map((n) => n.id);
    if (this.d.epochs.ack(cur.version) < cur.version) notAcked.push(self.id);
    if (this.progress.synced < cur.version) {
      if (notAcked.length > 0) {
        // Until every node writes under the new layout, a partition copied now could miss later writes.
        this.phase = 'waiting';
        this.waitingFor = notAcked;
        return;
      }
      this.phase = 'copying';
      this.waitingFor = [];
      const against = this.d.layout.open.map((l) => l.version);
      await this.sync(cur);
      if (this.d.layout.version !== cur.version || this.d.layout.open.map((l) => l.version).join() !== against.join()) return;
      this.progress.synced = cur.version;
      this.progress.syncedAgainst = against;
      this.save();
      this.log.info('layout transition: this node has its partitions', {
        version: cur.version, open: against, partitions: this.progress.donePartitions.length, buckets: this.progress.doneBuckets.length, bytesMoved: this.progress.bytesMoved,
      });
    }
    const notSynced = peers.filter((n, i) => !infos[i] || infos[i]!.synced < cur.version).map((n) => n.id);
    if (notSynced.length > 0) {
      this.phase = 'synced';
      this.waitingFor = notSynced;
      return;
    }
    // Every node has what the current layout gives it: reads move to its replicas. Writes keep going to
    // the older owners until every node reads this way, so no node reads a set another stopped writing.
    this.d.layout.readCurrent();
    const notReading = peers.filter((n, i) => !infos[i] || infos[i]!.version !== cur.version || (!infos[i]!.readsCurrent)).map((n) => n.id);
    if (notReading.length > 0) {
      this.phase = 'synced';
      this.waitingFor = notReading;
      return;
    }
    // Every node reads under the current layout: the older versions are no longer needed.
    this.progress.cleanupPending = true;
    this.save();
    this.d.layout.retireBelow(cur.version);
    this.phase = 'cleaning';
    this.waitingFor = [];
    this.nextCleanupMs = 0;
  }

  /** A merged older version this node did not sync against makes its sync incomplete. */
  private checkSyncedAgainst(): void {
    const against = new Set(this.progress.syncedAgainst);
    if (this.progress.synced >= this.d.layout.version && this.d.layout.open.some((l) => !against.has(l.version))) {
      this.progress.synced = 0;
      this.progress.donePartitions = [];
      this.progress.doneBuckets = [];
      this.save();
    }
  }

  /** Copies in every partition and bucket this node gained against the open versions. */
  private async sync(cur: Layout): Promise<void> {
    const self = cur.nodes.find((n) => n.id === this.d.layout.nodeId)!;
    const open = [...this.d.layout.open];
    // Metadata first: it is small, and a bucket's new replica must hold its records before reads move to it.
    const buckets = this.d.bucketNames().filter((b) => {
      if (!metaPlacement(cur, b).some((n) => n.id === self.id)) return false;
      return open.some((l) => !metaPlacement(l, b).some((n) => n.id === self.id));
    });
    this.progress.bucketsToSync = buckets.length;
    const doneBuckets = new Set(this.progress.doneBuckets);
    const oldest = this.d.layout.oldest!;
    for (const b of buckets) {
      if (doneBuckets.has(b)) continue;
      const from = metaPlacement(oldest, b).map((n) => cur.nodes.find((x) => x.id === n.id) ?? n);
      const taken = await this.d.pullBucket(b, from);
      this.progress.doneBuckets.push(b);
      this.save();
      if (taken > 0) this.log.info('bucket records taken from its former replicas', { bucket: b, records: taken });
    }
    const gained = gainedPartitions(cur, open, self);
    this.progress.partitionsToMove = gained.size;
    const done = new Set(this.progress.donePartitions);
    const todo = [...gained.keys()].filter((p) => !done.has(p)).sort((a, b) => a - b);
    if (this.progress.bytesToMove === 0 && todo.length > 0) {
      this.progress.bytesToMove = this.progress.bytesMoved + await this.estimateBytes(cur, todo, gained);
      this.save();
    }
    for (let i = 0; i < todo.length; i += BATCH_PARTITIONS) {
      if (this.stopped || this.d.layout.version !== cur.version) return;
      const batch = todo.slice(i, i + BATCH_PARTITIONS);
      const complete = await this.copyBatch(cur, self, batch, gained);
      if (this.stopped || this.d.layout.version !== cur.version) return; // a newer layout: the next step starts over
      this.progress.donePartitions.push(...complete);
      this.save();
      if (complete.length < batch.length) {
        throw new Error(`${batch.length - complete.length} partitions could not be listed from any former owner yet`);
      }
    }
  }

  /** Bytes of the gained partitions, asked of one former owner per partition (this node's site first). */
  private async estimateBytes(cur: Layout, todo: number[], gained: Map<number, LayoutNode[]>): Promise<number> {
    const bySource = new Map<string, { node: LayoutNode; parts: number[] }>();
    for (const p of todo) {
      const src = gained.get(p)![0];
      if (!src) continue;
      const e = bySource.get(src.id) ?? { node: src, parts: [] };
      e.parts.push(p);
      bySource.set(src.id, e);
    }
    let bytes = 0;
    for (const { node, parts } of bySource.values()) {
      for (let i = 0; i < parts.length; i += 1024) {
        const r = await this.d.rpc.call<{ sizes: { partition: number; blobs: number; bytes: number }[] }>(peerOf(node), 'POST', PLACES_SIZES_PATH,
          { partitions: parts.slice(i, i + 1024), partitionCount: cur.partitionCount }, { timeoutMs: 30_000 }).catch(() => ({ sizes: [] }));
        for (const s of r.sizes) bytes += s.bytes;
      }
    }
    return bytes;
  }

  /**
   * Lists a batch of partitions from every former owner that answers and copies in the blobs the
   * current layout places here and this node lacks. Returns the partitions for which at least one
   * former owner was listed whole and every needed copy was made.
   */
  private async copyBatch(cur: Layout, self: LayoutNode, batch: number[], gained: Map<number, LayoutNode[]>): Promise<number[]> {
    const sources = new Map<string, { node: LayoutNode; parts: number[] }>();
    for (const p of batch) {
      for (const n of gained.get(p)!) {
        const e = sources.get(n.id) ?? { node: n, parts: [] };
        e.parts.push(p);
        sources.set(n.id, e);
      }
    }
    const listed = new Set<number>();
    const failedParts = new Set<number>();
    for (const { node, parts } of sources.values()) {
      let after: { hash16: number; id: string } | undefined;
      try {
        for (;;) {
          if (this.stopped || this.d.layout.version !== cur.version) return [];
          const page = await this.d.rpc.call<{ blobs: PlacedBlob[] }>(peerOf(node), 'POST', PLACES_LIST_PATH,
            { partitions: parts, partitionCount: cur.partitionCount, after, limit: MAX_PLACES_PAGE }, { timeoutMs: 30_000 });
          const failures = await this.copyPage(cur, self, node, page.blobs, (p) => gained.get(p)?.[0]?.id === node.id);
          for (const p of failures) failedParts.add(p);
          if (page.blobs.length < MAX_PLACES_PAGE) break;
          const last = page.blobs[page.blobs.length - 1];
          after = { hash16: last.hash16, id: last.id };
        }
        for (const p of parts) listed.add(p);
      } catch (e) {
        if (!isPeerFailure(e)) this.log.warn('listing a former owner failed', { node: node.id, error: (e as Error).message });
      }
    }
    return batch.filter((p) => listed.has(p) && !failedParts.has(p));
  }

  /** Copies the blobs of one listing page that belong here and are missing; returns the partitions of failed copies. */
  private async copyPage(cur: Layout, self: LayoutNode, source: LayoutNode, rows: PlacedBlob[], estimated: (partition: number) => boolean): Promise<Set<number>> {
    const failed = new Set<number>();
    // bytesToMove was estimated from one former owner per partition: what it lists and this node does
    // not need comes off the estimate; what another owner gives comes on top of it.
    const counted = (r: PlacedBlob): boolean => estimated(r.hash16 % cur.partitionCount);
    const wanted = rows.filter((r) => {
      const here = this.placesHere(cur, r, self.id);
      if (!here && counted(r)) this.progress.bytesToMove -= r.size ?? 0;
      return here;
    });
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < wanted.length) {
        const r = wanted[next++];
        try {
          if (await this.localHas(r.id)) {
            this.d.places.record(r.id, { bucket: r.bucket, key: r.key }, r.size ?? undefined);
            if (counted(r)) this.progress.bytesToMove -= r.size ?? 0;
            continue;
          }
          const size = await this.copyIn(source, r);
          if (!counted(r)) this.progress.bytesToMove += size;
          this.progress.bytesMoved += size;
          this.rate.push({ t: Date.now(), bytes: size });
        } catch (e) {
          if (isBlobMissing(e)) continue; // deleted since it was listed
          // The repair worker (or a write) may be making this very copy: it counts once it is there.
          if (/already being written|EEXIST/.test((e as Error).message)) {
            await new Promise((res) => setTimeout(res, 500));
            if (await this.localHas(r.id).catch(() => false)) continue;
          }
          failed.add(r.hash16 % cur.partitionCount);
          if (!isPeerFailure(e)) this.log.warn('partition copy failed', { blobId: r.id, from: source.id, error: (e as Error).message });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, this.opts.concurrency) }, worker));
    return failed;
  }

  private async copyIn(source: LayoutNode, r: PlacedBlob): Promise<number> {
    const res = await this.d.rpc.fetchStream(peerOf(source), 'GET', blobPathOf(r.id));
    const w = this.d.blobs.createWriter({ id: r.id });
    try {
      await pipeline(res.body, this.throttle.stream(), w);
      const ref = await w.commit();
      if (r.size !== null && ref.size !== r.size) throw new Error(`copied ${ref.size} bytes of blob ${r.id}, its owner lists ${r.size}`);
      this.d.places.record(r.id, { bucket: r.bucket, key: r.key }, ref.size);
      return ref.size;
    } catch (e) {
      await w.abort().catch(() => undefined);
      res.body.destroy();
      throw e;
    }
  }

  // ---- after the transition: hand off and remove what this node no longer owns ------------------

  /**
   * For every copy held here that the current layout places elsewhere: make sure the nodes it places
   * it on (in this node's site, or anywhere when the policy has no copy in this site) hold it, giving
   * them this copy if they do not, then remove it here. A copy whose new holders cannot be reached stays.
   */
  private async cleanup(cur: Layout): Promise<void> {
    const self = cur.nodes.find((n) => n.id === this.d.layout.nodeId)!;
    let kept = 0;
    let removed = 0;
    for (const page of this.d.places.all(200)) {
      if (this.stopped || this.d.layout.version !== cur.version || this.d.layout.open.length > 0) return;
      const foreign = page.filter((r) => !this.placesHere(cur, r, self.id));
      if (foreign.length === 0) continue;
      const targetsOf = new Map<string, LayoutNode[]>();
      const byTarget = new Map<string, { node: LayoutNode; rows: PlacedBlob[] }>();
      for (const r of foreign) {
        const nodes = this.placement(cur, r);
        const mySite = nodes.filter((n) => n.site === self.site);
        const targets = (mySite.length > 0 ? mySite : nodes).filter((n) => n.id !== self.id);
        targetsOf.set(r.id, targets);
        for (const t of targets) {
          const e = byTarget.get(t.id) ?? { node: t, rows: [] };
          e.rows.push(r);
          byTarget.set(t.id, e);
        }
      }
      const holds = new Set<string>(); // `${target}/${blob}`
      for (const { node, rows } of byTarget.values()) {
        try {
          const r = await this.d.rpc.call<{ have: boolean[] }>(peerOf(node), 'POST', BLOBS_HAVE_PATH, { ids: rows.map((x) => x.id) }, { timeoutMs: 30_000 });
          for (let i = 0; i < rows.length; i++) {
            if (r.have[i]) holds.add(`${node.id}/${rows[i].id}`);
            else if (await this.handOff(node, rows[i])) holds.add(`${node.id}/${rows[i].id}`);
          }
        } catch (e) {
          if (!isPeerFailure(e)) this.log.warn('hand-off check failed', { node: node.id, error: (e as Error).message });
        }
      }
      for (const r of foreign) {
        const targets = targetsOf.get(r.id)!;
        // Never the last copy: with no node to take it (every site of its policy failed), it stays.
        if (targets.length === 0 || !targets.every((t) => holds.has(`${t.id}/${r.id}`))) {
          kept++;
          continue;
        }
        await this.d.blobs.delete(r.id).catch((e: Error) => this.log.warn('removing a moved copy failed', { blobId: r.id, error: e.message }));
        this.d.places.forget(r.id);
        removed++;
      }
    }
    this.ownedCache = undefined;
    if (removed > 0 || kept > 0) this.log.info('copies no longer owned handed off and removed', { removed, kept, version: cur.version });
    this.progress.cleanupPending = kept > 0;
    this.nextCleanupMs = Date.now() + CLEANUP_RETRY_MS;
    this.save();
  }

  private async handOff(target: LayoutNode, r: PlacedBlob): Promise<boolean> {
    try {
      // pipe() does not pass errors on: a copy deleted meanwhile must fail this hand-off, not the process.
      const src = this.d.blobs.openReader(r.id);
      const body: Readable = src.pipe(this.throttle.stream());
      src.once('error', (e: Error) => body.destroy(e));
      const res = await this.d.rpc.stream(peerOf(target), 'PUT', blobUploadPathOf(r.id, r.size ?? undefined, { bucket: r.bucket, key: r.key }), body);
      if (res.status !== 200) return false;
      const size = (res.json as BlobPutReply).size;
      this.log.info('copy handed off', { blobId: r.id, to: target.id, bytes: size });
      return true;
    } catch (e) {
      if (!isPeerFailure(e)) this.log.warn('hand-off failed', { blobId: r.id, to: target.id, error: (e as Error).message });
      return false;
    }
  }

  // ---- helpers ----------------------------------------------------------------------------------

  private placement(cur: Layout, r: PlacedBlob): LayoutNode[] {
    return dataPlacement(cur, r.bucket, r.key, this.d.policyOf(r.bucket)).copies.flatMap((c) => c.nodes);
  }

  private placesHere(cur: Layout, r: PlacedBlob, id: string): boolean {
    // The partition comes from the stored hash: no sha256 per entry.
    const policy = policyFor(cur, r.bucket, r.key, this.d.policyOf(r.bucket));
    const p = r.hash16 % cur.partitionCount;
    return ownersOf(cur, policy.name, p).includes(id);
  }

  /** Held and owned copies, counted at most every 2 s (status pages poll). */
  private ownership(): { held: number; owned: number } {
    const cur = this.d.layout.current;
    const c = this.ownedCache;
    if (c && Date.now() - c.atMs < OWNED_CACHE_MS && c.version === (cur?.version ?? 0)) return c;
    let held = 0;
    let owned = 0;
    for (const page of this.d.places.all()) {
      held += page.length;
      if (cur) for (const r of page) if (this.placesHere(cur, r, this.d.layout.nodeId)) owned++;
    }
    this.ownedCache = { atMs: Date.now(), version: cur?.version ?? 0, held, owned };
    return { held, owned };
  }

  private async localHas(id: string): Promise<boolean> {
    try {
      return (await this.d.blobs.stat(id)) !== undefined;
    } catch (e) {
      if (!isBlobCorrupt(e)) throw e;
      // A copy cut short (a crash mid-copy) or damaged: not a copy; it is written again.
      await this.d.blobs.delete(id);
      return false;
    }
  }

  private bytesPerSecond(): number {
    const now = Date.now();
    while (this.rate.length > 0 && now - this.rate[0].t > 10_000) this.rate.shift();
    if (this.rate.length === 0) return 0;
    const bytes = this.rate.reduce((n, x) => n + x.bytes, 0);
    return bytes / Math.max(1, (now - this.rate[0].t) / 1000);
  }

  private resetFor(version: number): void {
    const keepSynced = this.progress.synced;
    this.progress = {
      version, synced: Math.min(keepSynced, version), syncedAgainst: this.progress.syncedAgainst,
      donePartitions: [], doneBuckets: [], partitionsToMove: 0, bucketsToSync: 0, bytesToMove: 0, bytesMoved: 0,
      cleanupPending: this.progress.cleanupPending,
    };
    this.rate.length = 0;
    this.save();
  }

  private load(): Progress {
    const empty: Progress = {
      version: 0, synced: 0, syncedAgainst: [], donePartitions: [], doneBuckets: [], partitionsToMove: 0, bucketsToSync: 0,
      bytesToMove: 0, bytesMoved: 0, cleanupPending: true, // a first pass at start finds copies a crash left behind
    };
    try {
      const p = JSON.parse(fs.readFileSync(this.file, 'utf8')) as Progress;
      return { ...empty, ...p, cleanupPending: true };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn('rebalance progress unreadable; starting over', { error: (e as Error).message });
      return empty;
    }
  }

  private save(): void {
    writeFileAtomic(this.file, JSON.stringify(this.progress));
  }
}

/** Owners (node ids) of a partition under a policy: the policy's placement, cached per layout. */
const ownersCache = new WeakMap<Layout, Map<string, string[]>>();
function ownersOf(layout: Layout, policyName: string, partition: number): string[] {
  let m = ownersCache.get(layout);
  if (!m) {
    m = new Map();
    ownersCache.set(layout, m);
  }
  const k = `${policyName}/${partition}`;
  let ids = m.get(k);
  if (!ids) {
    const policy = layout.policies.find((p) => p.name === policyName)!;
    ids = placeCopies(layout, policy, partition).flatMap((c) => c.nodes.map((n) => n.id));
    m.set(k, ids);
  }
  return ids;
}

/**
 * Partitions `self` owns in its site under `cur` but did not under some open layout, each with the
 * nodes that owned it under the open layouts (any site, this node's site first; failed ones and nodes
 * no longer in the layout left out). Ownership is by site depth (the most copies any policy asks of
 * the site), so a partition is listed whatever the policy of its objects.
 */
export function gainedPartitions(cur: Layout, open: readonly Layout[], self: LayoutNode): Map<number, LayoutNode[]> {
  const out = new Map<number, LayoutNode[]>();
  const depthNow = siteDepths(cur).get(self.site) ?? 1;
  for (let p = 0; p < cur.partitionCount; p++) {
    if (!topActive(cur, self.site, p, depthNow).includes(self.id)) continue;
    let gained = false;
    const sources: LayoutNode[] = [];
    for (const l of open) {
      const depths = siteDepths(l);
      if (!topActive(l, self.site, p, depths.get(self.site) ?? 1).includes(self.id)) gained = true;
      for (const s of l.sites) {
        if (s.state !== 'active') continue;
        for (const id of topActive(l, s.name, p, depths.get(s.name) ?? 1)) {
          const now = cur.nodes.find((n) => n.id === id);
          if (id === self.id || now === undefined || now.state === 'failed' || sources.some((x) => x.id === id)) continue;
          sources.push(now);
        }
      }
    }
    if (gained) out.set(p, sources.sort((a, b) => Number(a.site !== self.site) - Number(b.site !== self.site)));
  }
  return out;
}

function partitionsOf(b: { partitions?: unknown; partitionCount?: unknown } | undefined): { partitions: number[]; partitionCount: number } {
  const partitionCount = Number(b?.partitionCount);
  const partitions = b?.partitions;
  if (!Number.isInteger(partitionCount) || partitionCount < 1 || partitionCount > 65536 || !Array.isArray(partitions) || partitions.length > 4096
    || partitions.some((p) => !Number.isInteger(p) || p < 0 || p >= partitionCount)) {
    throw new RpcError(400, 'BadRequest', 'body must be { partitions: [integers < partitionCount] (at most 4096), partitionCount }');
  }
  return { partitions: partitions as number[], partitionCount };
}
