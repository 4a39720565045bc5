// Where the data model keeps object bytes: this node's blob store, or (in a grid) copies on the nodes
// the placement names. The model only knows this interface.
import type { Readable, Writable } from 'node:stream';
import type { BlobStore } from '../blocks/blob-store';
import type { BlobRef } from '../meta/types';

/** The object a blob belongs to: in a grid, it decides which nodes hold the copies. */
export interface BlobPlace {
  bucket: string;
  key: string;
  /** The replication policy bound to the bucket, if any: it places the data whatever the globs say. */
  policy?: string;
}

/** A blob being written: bytes in, then commit() (durable where the policy says) or abort(). */
export interface BlobSink extends Writable {
  readonly id: string;
  commit(): Promise<BlobRef>;
  abort(): Promise<void>;
}

export interface BlobBackend {
  createWriter(place: BlobPlace): BlobSink;
  /** Bytes [start, endInclusive] of a blob, each chunk checked before it is emitted. */
  openReader(ref: BlobRef, place: BlobPlace, range: { start: number; endInclusive: number }): Readable;
  /** Removes the blob's copies; failures are the backend's to log or retry. */
  delete(ref: BlobRef, place: BlobPlace): Promise<void>;
}

/** The stand-alone node: every blob in this node's store. */
export class LocalBlobs implements BlobBackend {
  constructor(readonly store: BlobStore) {}

  createWriter(): BlobSink {
    return this.store.createWriter();
  }

  openReader(ref: BlobRef, _place: BlobPlace, range: { start: number; endInclusive: number }): Readable {
    return this.store.openReader(ref.id, range);
  }

  delete(ref: BlobRef): Promise<void> {
    return this.store.delete(ref.id);
  }
}
