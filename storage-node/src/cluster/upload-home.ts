// Multipart uploads in a grid: the node that created an upload (its "home", named in the upload id)
// keeps its record and parts; any other gateway fetches them before a multipart request and hands its
// parts back before answering, so an upload's requests may go through any gateway.
import { createHash } from 'node:crypto';
import type { MetaStore } from '../meta/meta-store';
import type { PartRecord, UploadRecord } from '../meta/types';
import { RpcError, RpcRoute } from '../rpc';
import { newUploadId } from '../util/hlc';
import type { Logger } from '../util/logger';
import type { LayoutNode } from '../layout/types';
import type { LayoutState } from './layout-state';
import { peerOf } from './membership';
import type { GridRuntime } from './grid';

export const UPLOAD_PATHS = { get: '/_rpc/uploads/get', put: '/_rpc/uploads/put', gone: '/_rpc/uploads/gone' } as const;

/** 12 hex digits of sha256(node id): short enough for S3's upload-id limits, unique within a grid. */
export function nodeTag(nodeId: string): string {
  return createHash('sha256').update(nodeId).digest('hex').slice(0, 12);
}

/** `<node tag>Z<random>`: the tag is hex, so the first 'Z' ends it. */
export function gridUploadId(nodeId: string): string {
  return `${nodeTag(nodeId)}Z${newUploadId()}`;
}

export interface UploadDoc {
  upload: UploadRecord;
  parts: PartRecord[];
}

export class UploadHome {
  constructor(
    private readonly meta: MetaStore,
    private readonly layout: LayoutState,
    private readonly grid: GridRuntime,
    private readonly log: Logger,
  ) {}

  /** The node keeping `uploadId`, or undefined when it is this node or unknown (a stand-alone id). */
  homeOf(uploadId: string): LayoutNode | undefined {
    const z = uploadId.indexOf('Z');
    if (z !== 12) return undefined;
    const tag = uploadId.slice(0, 12);
    if (tag === nodeTag(this.layout.nodeId)) return undefined;
    return this.layout.current?.nodes.find((x) => nodeTag(x.id) === tag);
  }

  /** Before a multipart request through this gateway: take the upload and its parts from its home. */
  async fetch(uploadId: string): Promise<void> {
    const home = this.homeOf(uploadId);
    if (!home) return;
    let doc: UploadDoc | null;
    try {
      doc = (await this.grid.rpc.call<{ doc: UploadDoc | null }>(peerOf(home), 'POST', UPLOAD_PATHS.get, { uploadId }, { timeoutMs: 10_000 })).doc;
    } catch (e) {
      if (e instanceof RpcError) throw e;
      throw Object.assign(new Error(`the node keeping upload ${uploadId} (${home.id}) is unreachable: ${(e as Error).message}`), { name: 'QuorumError' });
    }
    this.meta.transaction(() => {
      if (doc === null) {
        // Completed or aborted at home: forget any local copy (the handler then answers NoSuchUpload).
        if (this.meta.getUpload(uploadId)) this.meta.deleteUpload(uploadId);
        return;
      }
      this.apply(doc);
    });
  }

  /** After this gateway stored a part, or completed or aborted the upload: tell its home first. */
  async push(u: UploadRecord, change: 'part' | 'gone', part?: PartRecord): Promise<void> {
    const home = this.homeOf(u.uploadId);
    if (!home) return;
    try {
      if (change === 'part') await this.grid.rpc.call(peerOf(home), 'POST', UPLOAD_PATHS.put, { doc: { upload: u, parts: part ? [part] : [] } }, { timeoutMs: 10_000 });
      else await this.grid.rpc.call(peerOf(home), 'POST', UPLOAD_PATHS.gone, { uploadId: u.uploadId }, { timeoutMs: 10_000 });
    } catch (e) {
      throw Object.assign(new Error(`the node keeping upload ${u.uploadId} (${home.id}) did not take the change: ${(e as Error).message}`), { name: 'QuorumError' });
    }
  }

  routes(): RpcRoute[] {
    const uploadIdOf = (b: unknown): string => {
      const id = (b as { uploadId?: unknown } | undefined)?.uploadId;
      if (typeof id !== 'string' || !/^[A-Za-z0-9_-]{1,128}$/.test(id)) throw new RpcError(400, 'BadRequest', 'uploadId must be an upload id');
      return id;
    };
    return [
      {
        method: 'POST', path: UPLOAD_PATHS.get, handler: (req) => {
          const id = uploadIdOf(req.body);
          const upload = this.meta.getUpload(id);
          return { doc: upload ? { upload, parts: this.meta.getParts(id) } : null };
        },
      },
      {
        method: 'POST', path: UPLOAD_PATHS.put, handler: async (req) => {
          const doc = (req.body as { doc?: UploadDoc } | undefined)?.doc;
          if (!doc?.upload || !Array.isArray(doc.parts)) throw new RpcError(400, 'BadRequest', 'doc must be {upload, parts}');
          uploadIdOf(doc.upload);
          const ok = this.meta.transaction(() => {
            if (!this.meta.getUpload(doc.upload.uploadId)) return false;
            this.apply(doc);
            return true;
          });
          if (!ok) throw new RpcError(404, 'NoSuchUpload', `upload ${doc.upload.uploadId} is not in progress`);
          await this.meta.sync();
          return { ok: true };
        },
      },
      {
        method: 'POST', path: UPLOAD_PATHS.gone, handler: async (req) => {
          const id = uploadIdOf(req.body);
          // The gateway that completed or aborted frees (or keeps) the parts' blobs; not this node.
          if (this.meta.getUpload(id)) this.meta.transaction(() => this.meta.deleteUpload(id));
          await this.meta.sync();
          this.log.info('multipart upload ended through another gateway', { uploadId: id, peer: req.peerId });
          return { ok: true };
        },
      },
    ];
  }

  /** Upload record if missing, and each part unless this node holds a newer one of that number. */
  private apply(doc: UploadDoc): void {
    if (!this.meta.getUpload(doc.upload.uploadId)) this.meta.createUpload(doc.upload);
    const held = new Map(this.meta.getParts(doc.upload.uploadId).map((p) => [p.partNumber, p]));
    for (const p of doc.parts) {
      const mine = held.get(p.partNumber);
      if (mine && (mine.lastModifiedMs > p.lastModifiedMs || (mine.lastModifiedMs === p.lastModifiedMs && mine.etag === p.etag && mine.blob?.id === p.blob?.id))) continue;
      this.meta.putPart(p);
    }
  }
}
