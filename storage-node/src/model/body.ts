import type { Readable } from 'node:stream';
import type { ChecksumAlgorithm } from '../util/checksum';

/** What the layer above hands to the store: the object's bytes and, once consumed, their verified digests. */
export interface BodyInput {
  stream: Readable;
  /**
   * Called once the stream ended. Verifies what the client declared (Content-MD5, x-amz-content-sha256,
   * x-amz-checksum-*, length) and throws the S3Error to answer on a mismatch; returns the digests to store.
   */
  finish(): BodyDigests;
}

export interface BodyDigests {
  sizeBytes: number;
  md5Hex: string;
  checksum?: { algorithm: ChecksumAlgorithm; value: string };
}
