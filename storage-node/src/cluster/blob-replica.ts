// The replica side of data replication: a peer stores, serves and removes blob copies over RPC.
import { pipeline } from 'node:stream/promises';
import { BlobStore, isBlobCorrupt } from '../blocks/blob-store';
import { isBlobId } from '../blocks/blob-format';
import type { BlobPlace } from '../model/blob-backend';
import { RpcError, RpcRequest, RpcRoute } from '../rpc';
import type { BlobPlaces } from './blob-places';
import { Logger, silentLogger } from '../util/logger';

export const BLOB_PATH = /^\/_rpc\/blobs\/([0-9a-f]{32})$/;
export const blobPathOf = (id: string): string => `/_rpc/blobs/${id}`;
export const BLOB_VERIFY_PATH = /^\/_rpc\/blobs\/([0-9a-f]{32})\/verify$/;
export const blobVerifyPathOf = (id: string): string => `/_rpc/blobs/${id}/verify`;

/** A copy that is not there: 404 from a peer, or BlobNotFoundError from this node's store. */
export function isBlobMissing(e: unknown): boolean {
  return (e instanceof RpcError && e.status === 404) || (e as Error)?.name === 'BlobNotFoundError';
}

/** What a replica says of its copy after reading it whole. */
export interface BlobVerifyReply {
  exists: boolean;
  ok: boolean;
  badChunks: number[];
}

/**
 * Reads this node's copy whole and says what it is: missing, good, or bad (with its first bad chunks;
 * [-1] when its framing cannot even be read). Any other error (the disk, not the copy) is thrown: a
 * copy that could not be read is not a bad copy to be removed.
 */
export async function verifyCopy(blobs: BlobStore, id: string): Promise<BlobVerifyReply> {
  try {
    const r = await blobs.verify(id);
    return { exists: true, ok: r.ok, badChunks: r.badChunks.slice(0, 100) };
  } catch (e) {
    if ((e as Error).name === 'BlobNotFoundError') return { exists: false, ok: false, badChunks: [] };
    if (isBlobCorrupt(e)) return { exists: true, ok: false, badChunks: [-1] };
    throw e;
  }
}
/**
 * Path of a blob upload. `size`, when the sender knows it, is the number of data bytes it is about to
 * stream, checked by the replica; without it the sender checks the size the replica reports.
 */
export const blobUploadPathOf = (id: string, size?: number, place?: BlobPlace): string => {
  const q = new URLSearchParams();
  if (size !== undefined) q.set('size', String(size));
  if (place) {
    q.set('bucket', place.bucket);
    q.set('key', place.key);
  }
  const qs = q.toString();
  return `/_rpc/blobs/${id}${qs ? `?${qs}` : ''}`;
};
/** Response header of a blob download: the blob's whole size (the body may be a range of it). */
export const HEADER_BLOB_SIZE = 'x-blob-size';

export interface BlobPutReply {
  size: number;
  /** True when this replica already held the blob (a retried copy): nothing was written. */
  existed: boolean;
}

/**
 * Routes: PUT a copy under the gateway's blob id (durable before the answer; the body is streamed to
 * disk, never held), GET a byte range (every chunk checked before its bytes leave; a corrupt chunk
 * cuts the response, so the reader moves on to another copy), DELETE a copy.
 */
export class BlobReplica {
  private readonly log: Logger;

  constructor(private readonly blobs: BlobStore, logger?: Logger, private readonly places?: BlobPlaces) {
    this.log = logger ?? silentLogger();
  }

  routes(): RpcRoute[] {
    return [
      { method: 'PUT', path: BLOB_PATH, stream: true, handler: (req) => this.put(req) },
      { method: 'GET', path: BLOB_PATH, handler: async (req, res) => {
        const id = req.params[0];
        const range = parseRange(req.query);
        const stat = await this.blobs.stat(id).catch(() => undefined);
        if (stat === undefined) throw new RpcError(404, 'NoSuchBlob', `blob ${id} is not here`);
        if (range && range.endInclusive >= stat.sizeBytes) throw new RpcError(416, 'InvalidRange', `blob ${id} has ${stat.sizeBytes} bytes`);
        const length = range ? range.endInclusive - range.start + 1 : stat.sizeBytes;
        await res.stream(this.blobs.openReader(id, range), { headers: { 'content-length': String(length), [HEADER_BLOB_SIZE]: String(stat.sizeBytes) } });
        return undefined;
      } },
      { method: 'POST', path: BLOB_VERIFY_PATH, timeoutMs: 10 * 60_000, handler: (req) => verifyCopy(this.blobs, req.params[0]) },
      { method: 'DELETE', path: BLOB_PATH, handler: async (req) => {
        await this.blobs.delete(req.params[0]);
        this.places?.forget(req.params[0]);
        return { deleted: true };
      } },
    ];
  }

  private async put(req: RpcRequest): Promise<BlobPutReply> {
    const id = req.params[0];
    const body = req.stream!;
    const sizeParam = req.query.get('size');
    const declared = sizeParam === null ? undefined : Number(sizeParam);
    if (!isBlobId(id) || (declared !== undefined && (!Number.isSafeInteger(declared) || declared < 0))) {
      body.destroy();
      throw new RpcError(400, 'BadRequest', `a blob upload needs a blob id and, if given, a size (?size=) that is an integer ≥ 0`);
    }
    if (this.blobs.isWriting(id)) {
      // Drained, not cut: a repair racing with the original copy is normal and must not look like a
      // failed peer to the sender.
      for await (const chunk of body) void chunk;
      throw new RpcError(409, 'BlobBusy', `blob ${id} is being written here right now`);
    }
    let held: { sizeBytes: number } | undefined;
    try {
      held = await this.blobs.stat(id);
    } catch (e) {
      if (!isBlobCorrupt(e)) throw e;
      // A copy cut short by a crash (written in place, never completed) or damaged: write it anew.
      this.log.warn('replacing a damaged blob copy', { blobId: id, peer: req.peerId, error: (e as Error).message });
      await this.blobs.delete(id);
    }
    if (held !== undefined) {
      // Read to the end before answering: an answer while the sender is still streaming would cut the
      // connection under it (it would see a broken pipe and count this node as failed).
      for await (const chunk of body) void chunk;
      if (declared !== undefined && held.sizeBytes !== declared) throw new RpcError(409, 'BlobMismatch', `blob ${id} is here with ${held.sizeBytes} bytes, not ${declared}`);
      const bucket = req.query.get('bucket');
      const key = req.query.get('key');
      if (bucket !== null && key !== null) this.places?.record(id, { bucket, key }, held.sizeBytes);
      return { size: held.sizeBytes, existed: true };
    }
    const writer = this.blobs.createWriter({ id });
    try {
      await pipeline(body, writer);
      const ref = await writer.commit();
      if (declared !== undefined && ref.size !== declared) {
        await this.blobs.delete(id);
        throw new RpcError(400, 'IncompleteBody', `blob ${id}: received ${ref.size} bytes, ${declared} announced`);
      }
      const bucket = req.query.get('bucket');
      const key = req.query.get('key');
      if (bucket !== null && key !== null) this.places?.record(id, { bucket, key }, ref.size);
      return { size: ref.size, existed: false };
    } catch (e) {
      await writer.abort().catch(() => undefined);
      if (!(e instanceof RpcError)) this.log.warn('blob copy not stored', { blobId: id, peer: req.peerId, error: (e as Error).message });
      throw e;
    }
  }
}

function parseRange(q: URLSearchParams): { start: number; endInclusive: number } | undefined {
  const s = q.get('start');
  const e = q.get('end');
  if (s === null && e === null) return undefined;
  const start = Number(s);
  const endInclusive = Number(e);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(endInclusive) || start < 0 || endInclusive < start) {
    throw new RpcError(400, 'BadRequest', 'start and end must be integers with 0 <= start <= end');
  }
  return { start, endInclusive };
}
