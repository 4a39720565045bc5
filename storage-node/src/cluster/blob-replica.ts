// The replica side of data replication: a peer stores, serves and removes blob copies over RPC.
import { pipeline } from 'node:stream/promises';
import type { BlobStore } from '../blocks/blob-store';
import { isBlobId } from '../blocks/blob-format';
import { RpcError, RpcRequest, RpcRoute } from '../rpc';
import { Logger, silentLogger } from '../util/logger';

export const BLOB_PATH = /^\/_rpc\/blobs\/([0-9a-f]{32})$/;
export const blobPathOf = (id: string): string => `/_rpc/blobs/${id}`;
/** Path of a blob upload: `size` is the number of data bytes the sender is about to stream. */
export const blobUploadPathOf = (id: string, size: number): string => `/_rpc/blobs/${id}?size=${size}`;
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

  constructor(private readonly blobs: BlobStore, logger?: Logger) {
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
      { method: 'DELETE', path: BLOB_PATH, handler: async (req) => {
        await this.blobs.delete(req.params[0]);
        return { deleted: true };
      } },
    ];
  }

  private async put(req: RpcRequest): Promise<BlobPutReply> {
    const id = req.params[0];
    const body = req.stream!;
    const declared = Number(req.query.get('size') ?? NaN);
    if (!isBlobId(id) || !Number.isSafeInteger(declared) || declared < 0) {
      body.destroy();
      throw new RpcError(400, 'BadRequest', `a blob upload needs a blob id and its size (?size=)`);
    }
    const held = await this.blobs.stat(id).catch(() => undefined);
    if (held !== undefined) {
      body.resume();
      if (held.sizeBytes !== declared) throw new RpcError(409, 'BlobMismatch', `blob ${id} is here with ${held.sizeBytes} bytes, not ${declared}`);
      return { size: held.sizeBytes, existed: true };
    }
    const writer = this.blobs.createWriter({ id });
    try {
      await pipeline(body, writer);
      const ref = await writer.commit();
      if (ref.size !== declared) {
        await this.blobs.delete(id);
        throw new RpcError(400, 'IncompleteBody', `blob ${id}: received ${ref.size} bytes, ${declared} announced`);
      }
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
