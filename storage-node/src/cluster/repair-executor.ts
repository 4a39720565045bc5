// Makes owed copies: a blob copy a node missed, or a copy found bad, is streamed from a good copy.
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BlobStore } from '../blocks/blob-store';
import { readCandidates } from '../layout/placement';
import type { LayoutNode } from '../layout/types';
import { RpcClient, RpcError } from '../rpc';
import { Logger, silentLogger } from '../util/logger';
import { blobPathOf, blobUploadPathOf, blobVerifyPathOf, BlobPutReply, BlobVerifyReply, isBlobMissing, verifyCopy } from './blob-replica';
import type { LayoutState } from './layout-state';
import { isPeerFailure, peerOf } from './membership';
import type { RepairEntry, RepairOutcome } from './repair-queue';
import type { BlobPlaces } from './blob-places';
import type { BlobPlace } from '../model/blob-backend';

/** Repair counters for the admin status and metrics. */
export interface RepairProgress {
  copiesMade: number;
  bytesCopied: number;
  badCopiesReplaced: number;
  lastMadeMs?: number;
}

export class RepairExecutor {
  readonly progress: RepairProgress = { copiesMade: 0, bytesCopied: 0, badCopiesReplaced: 0 };
  private readonly log: Logger;

  constructor(
    private readonly layout: LayoutState,
    private readonly rpc: RpcClient,
    private readonly local: BlobStore,
    logger?: Logger,
    private readonly places?: BlobPlaces,
    /** The replication policy bound to a bucket, if any (it decides where the good copies are). */
    private readonly policyOf?: (bucket: string) => string | undefined,
  ) {
    this.log = logger ?? silentLogger();
  }

  /** The RepairQueue executor. */
  execute = async (item: Readonly<RepairEntry>, signal: AbortSignal): Promise<RepairOutcome> => {
    const l = this.layout.current;
    if (l === undefined) return 'retry';
    const target = l.nodes.find((n) => n.id === item.target);
    // A node that left the layout is owed nothing; one marked failed will not come back to take it.
    if (target === undefined || target.state === 'failed') return 'drop';
    if (item.kind === 'meta' || item.blobId === undefined) return 'drop'; // metadata is repaired by read repair and anti-entropy
    if (item.kind === 'corrupt') {
      const state = await this.verify(target, item.blobId);
      if (state.exists && state.ok) return 'done';
      if (state.exists) {
        await this.remove(target, item.blobId);
        this.progress.badCopiesReplaced++;
        this.log.warn('bad blob copy removed, copying a good one', { blobId: item.blobId, node: target.id, badChunks: state.badChunks });
      }
    }
    const sources = readCandidates(l, item.bucket, item.key, target.site, { boundPolicy: this.policyOf?.(item.bucket), previous: this.layout.open }).filter((n) => n.id !== target.id);
    let anyUnavailable = false;
    for (const src of sources) {
      if (signal.aborted) return 'retry';
      let body: Readable | undefined;
      try {
        body = await this.open(src, item.blobId);
        // A corrupt copy found by the scrubber comes without a size (its footer may be what is damaged).
        const size = await this.store(target, item.blobId, body, item.sizeBytes > 0 ? item.sizeBytes : undefined, { bucket: item.bucket, key: item.key });
        this.progress.copiesMade++;
        this.progress.bytesCopied += size;
        this.progress.lastMadeMs = Date.now();
        this.log.info('owed copy made', { blobId: item.blobId, from: src.id, to: target.id, bytes: size, kind: item.kind });
        return 'done';
      } catch (e) {
        if (isBlobMissing(e)) continue; // this source does not hold it; try the next
        anyUnavailable = true;
        if (isPeerFailure(e) && (e as { peerId?: string }).peerId === target.id) return 'retry'; // the target itself is unreachable
        this.log.debug('repair source failed', { blobId: item.blobId, from: src.id, to: target.id, error: (e as Error).message });
      } finally {
        body?.destroy();
      }
    }
    // No reachable source holds it: either they are down (retry later) or the object is gone (drop).
    return anyUnavailable ? 'retry' : 'drop';
  };

  private async verify(n: LayoutNode, id: string): Promise<BlobVerifyReply> {
    if (n.id === this.layout.nodeId) return verifyCopy(this.local, id);
    return this.rpc.call<BlobVerifyReply>(peerOf(n), 'POST', blobVerifyPathOf(id), {}, { timeoutMs: 10 * 60_000 });
  }

  private async remove(n: LayoutNode, id: string): Promise<void> {
    if (n.id === this.layout.nodeId) return this.local.delete(id);
    await this.rpc.call(peerOf(n), 'DELETE', blobPathOf(id), undefined, { timeoutMs: 10_000 });
  }

  private async open(n: LayoutNode, id: string): Promise<Readable> {
    if (n.id === this.layout.nodeId) {
      const st = await this.local.stat(id);
      if (st === undefined) throw new RpcError(404, 'NoSuchBlob', `blob ${id} is not here`);
      return this.local.openReader(id);
    }
    return (await this.rpc.fetchStream(peerOf(n), 'GET', blobPathOf(id))).body;
  }

  private async store(n: LayoutNode, id: string, body: Readable, size: number | undefined, place: BlobPlace): Promise<number> {
    if (n.id === this.layout.nodeId) {
      const held = await this.local.stat(id).catch(() => undefined);
      if (held !== undefined) {
        body.destroy();
        return held.sizeBytes;
      }
      const w = this.local.createWriter({ id });
      try {
        await pipeline(body, w);
        const ref = await w.commit();
        if (size !== undefined && ref.size !== size) throw new Error(`copied ${ref.size} bytes, expected ${size}`);
        this.places?.record(id, place, ref.size);
        return ref.size;
      } catch (e) {
        await w.abort().catch(() => undefined);
        throw e;
      }
    }
    const r = await this.rpc.stream(peerOf(n), 'PUT', blobUploadPathOf(id, size, place), body);
    return (r.json as BlobPutReply).size;
  }
}
