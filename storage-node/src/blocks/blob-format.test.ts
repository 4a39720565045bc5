import assert from 'node:assert/strict';
import { crc32c } from '@node-rs/crc32';
import {
  BlobFormatError, FOOTER_TAIL_BYTES, HEADER_BYTES, chunkCountFor, chunkCrc, chunkLength, chunkOffset, decodeFooter,
  decodeFooterTail, decodeHeader, encodeFooter, encodeHeader, fileSizeFor,
} from './blob-format';

const ID = '0123456789abcdef0123456789abcdef';

describe('blob format', () => {
  it('round-trips a header and refuses a damaged, foreign or future one', () => {
    const h = encodeHeader({ chunkSizeBytes: 4096, blobId: ID });
    assert.equal(h.length, HEADER_BYTES);
    assert.deepEqual(decodeHeader(h), { formatVersion: 1, flags: 0, chunkSizeBytes: 4096, blobId: ID });
    for (let i = 0; i < HEADER_BYTES; i++) {
      const bad = Buffer.from(h);
      bad[i] ^= 0x01;
      assert.throws(() => decodeHeader(bad), BlobFormatError, `flipped byte ${i} accepted`);
    }
    const future = Buffer.from(h);
    future.writeUInt16LE(2, 4);
    future.writeUInt32LE(crc32c(future.subarray(0, 28)), 28);
    assert.throws(() => decodeHeader(future), /unsupported blob format version 2/);
    assert.throws(() => decodeHeader(Buffer.from('PK\x03\x04' + 'x'.repeat(28), 'latin1')), /not a blob file/);
  });

  it('round-trips a footer and detects any flipped byte in it', () => {
    const crcs = [1, 2, 0xffffffff];
    const f = encodeFooter(crcs, 2 * 4096 + 5, 4096);
    assert.equal(f.length, 3 * 4 + FOOTER_TAIL_BYTES);
    const d = decodeFooter(f, 4096);
    assert.equal(d.dataLengthBytes, 2 * 4096 + 5);
    assert.equal(d.chunkCount, 3);
    assert.deepEqual([0, 1, 2].map((i) => chunkCrc(d, i)), crcs);
    assert.deepEqual(decodeFooterTail(f.subarray(f.length - FOOTER_TAIL_BYTES)), { dataLengthBytes: 2 * 4096 + 5, chunkCount: 3 });
    for (let i = 0; i < f.length; i++) {
      const bad = Buffer.from(f);
      bad[i] ^= 0x80;
      assert.throws(() => decodeFooter(bad, 4096), BlobFormatError, `flipped byte ${i} accepted`);
    }
  });

  it('describes an empty blob with no chunks', () => {
    const f = encodeFooter([], 0, 1024);
    assert.equal(decodeFooter(f, 1024).chunkCount, 0);
    assert.equal(fileSizeFor(0, 1024), HEADER_BYTES + FOOTER_TAIL_BYTES);
  });

  it('refuses a footer whose chunk count does not match its length', () => {
    assert.throws(() => encodeFooter([1], 4097, 4096), RangeError);
    const f = encodeFooter([1, 2], 4097, 4096);
    assert.throws(() => decodeFooter(f, 8192), /cannot hold/);
  });

  it('places chunks contiguously after the header, the last one short', () => {
    assert.equal(chunkOffset(4096, 0), HEADER_BYTES);
    assert.equal(chunkOffset(4096, 3), HEADER_BYTES + 3 * 4096);
    assert.equal(chunkCountFor(4096 * 5 + 3, 4096), 6);
    assert.equal(chunkLength(4096 * 5 + 3, 4096, 5), 3);
    assert.equal(chunkLength(4096 * 5 + 3, 4096, 4), 4096);
    assert.equal(fileSizeFor(4096 * 5 + 3, 4096), HEADER_BYTES + 4096 * 5 + 3 + 6 * 4 + FOOTER_TAIL_BYTES);
  });

  it('refuses chunk sizes outside its limits', () => {
    assert.throws(() => encodeHeader({ chunkSizeBytes: 0, blobId: ID }), RangeError);
    assert.throws(() => encodeHeader({ chunkSizeBytes: 128 * 1024 * 1024, blobId: ID }), RangeError);
    assert.throws(() => encodeHeader({ chunkSizeBytes: 4096, blobId: '../../etc/passwd' }), RangeError);
  });
});
