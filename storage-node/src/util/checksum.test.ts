import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Crc64Nvme } from '@aws-sdk/crc64-nvme';
import {
  CHECKSUM_ALGORITHMS, ChecksumAlgorithm, CrcAlgorithm, checksumHeaderName, combineCrc, compositeChecksum, createHasher,
  digestLengthBytes, isValidChecksumValue, parseChecksumAlgorithm,
} from './checksum';

const CRCS: CrcAlgorithm[] = ['CRC32', 'CRC32C', 'CRC64NVME'];

function oneShot(alg: ChecksumAlgorithm | 'MD5', data: Buffer): Buffer {
  const h = createHasher(alg);
  h.update(data);
  return h.digest();
}

function b64(alg: ChecksumAlgorithm, data: Buffer): string {
  return oneShot(alg, data).toString('base64');
}

describe('checksum', () => {
  it('computes the published check values of "123456789"', () => {
    const input = Buffer.from('123456789');
    assert.equal(oneShot('CRC32', input).toString('hex'), 'cbf43926');
    assert.equal(oneShot('CRC32C', input).toString('hex'), 'e3069283');
    assert.equal(oneShot('CRC64NVME', input).toString('hex'), 'ae8b14860a799888');
    assert.equal(oneShot('SHA1', input).toString('hex'), 'f7c3bc1d808e04732adf679965ccc34ca7ae3441');
    assert.equal(oneShot('SHA256', input).toString('hex'), '15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225');
    assert.equal(oneShot('MD5', input).toString('hex'), '25f9e794323b453885f5181f1b624d0b');
  });

  it('gives the checksum of no bytes that S3 gives for an empty object', () => {
    assert.equal(b64('CRC32', Buffer.alloc(0)), 'AAAAAA==');
    assert.equal(b64('CRC64NVME', Buffer.alloc(0)), 'AAAAAAAAAAA=');
    assert.equal(b64('SHA256', Buffer.alloc(0)), '47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=');
  });

  it('gives the same digest however the bytes are split into updates', () => {
    const data = randomBytes(10_000);
    for (const alg of [...CHECKSUM_ALGORITHMS, 'MD5' as const]) {
      const whole = oneShot(alg, data);
      for (const step of [1, 3, 7, 8, 9, 64, 4097]) {
        const h = createHasher(alg);
        for (let i = 0; i < data.length; i += step) h.update(data.subarray(i, i + step));
        assert.deepEqual(h.digest(), whole, `${alg} step ${step}`);
      }
      assert.equal(whole.length, digestLengthBytes(alg));
    }
  });

  it('computes CRC64NVME exactly as the AWS SDK does', async () => {
    for (const len of [0, 1, 7, 8, 9, 15, 16, 17, 1000, 65_537]) {
      const data = randomBytes(len);
      const sdk = new Crc64Nvme();
      sdk.update(data);
      assert.deepEqual(oneShot('CRC64NVME', data), Buffer.from(await sdk.digest()), `length ${len}`);
    }
  });

  it('parses algorithm names case-insensitively and rejects unknown ones', () => {
    assert.equal(parseChecksumAlgorithm('crc32c'), 'CRC32C');
    assert.equal(parseChecksumAlgorithm('Crc64Nvme'), 'CRC64NVME');
    assert.equal(parseChecksumAlgorithm('SHA256'), 'SHA256');
    assert.equal(parseChecksumAlgorithm('md5'), undefined);
    assert.equal(parseChecksumAlgorithm('crc'), undefined);
    assert.equal(parseChecksumAlgorithm(''), undefined);
    assert.equal(parseChecksumAlgorithm(undefined), undefined);
  });

  it('names the S3 header of each algorithm', () => {
    assert.equal(checksumHeaderName('CRC32'), 'x-amz-checksum-crc32');
    assert.equal(checksumHeaderName('CRC64NVME'), 'x-amz-checksum-crc64nvme');
    assert.equal(checksumHeaderName('SHA1'), 'x-amz-checksum-sha1');
  });

  it('accepts only canonical base64 of the right digest length', () => {
    for (const alg of CHECKSUM_ALGORITHMS) {
      const good = b64(alg, Buffer.from('x'));
      assert.ok(isValidChecksumValue(alg, good), alg);
      assert.ok(!isValidChecksumValue(alg, good.slice(0, -1)), `${alg} truncated`);
      assert.ok(!isValidChecksumValue(alg, good + 'AAAA'), `${alg} too long`);
      assert.ok(!isValidChecksumValue(alg, good.replace(/.$/, '!')), `${alg} bad char`);
    }
    assert.ok(!isValidChecksumValue('CRC32', 'AAAAAA'), 'missing padding');
    assert.ok(!isValidChecksumValue('CRC32', 'AAAAAB=='), 'non-canonical trailing bits');
    assert.ok(!isValidChecksumValue('SHA256', b64('SHA1', Buffer.from('x'))), 'SHA1 value for SHA256');
  });

  it('computes the COMPOSITE multipart checksum as the checksum of the part checksums', () => {
    const parts = [randomBytes(100), randomBytes(200), randomBytes(3)];
    for (const alg of CHECKSUM_ALGORITHMS) {
      const digests = parts.map((p) => oneShot(alg, p));
      const expected = oneShot(alg, Buffer.concat(digests)).toString('base64') + '-3';
      assert.equal(compositeChecksum(alg, digests.map((d) => d.toString('base64'))), expected);
    }
    // A value known from S3's documentation style: SHA256 over SHA256 digests, independently computed.
    const d = createHash('sha256').update('a').digest();
    assert.equal(compositeChecksum('SHA256', [d.toString('base64')]), createHash('sha256').update(d).digest('base64') + '-1');
    assert.throws(() => compositeChecksum('CRC32', ['not-base64']));
  });

  it('combines part CRCs into the CRC of the whole object', () => {
    for (const alg of CRCS) {
      for (let trial = 0; trial < 20; trial++) {
        const count = 1 + (trial % 5);
        const parts = Array.from({ length: count }, () => randomBytes(Math.floor(Math.random() * 3000)));
        const combined = combineCrc(alg, parts.map((p) => ({ checksumBase64: b64(alg, p), sizeBytes: p.length })));
        assert.equal(combined, b64(alg, Buffer.concat(parts)), `${alg} trial ${trial}`);
      }
    }
  });

  it('combines correctly with empty parts, a single part and no parts', () => {
    const a = randomBytes(5000);
    const empty = Buffer.alloc(0);
    for (const alg of CRCS) {
      const e = { checksumBase64: b64(alg, empty), sizeBytes: 0 };
      const pa = { checksumBase64: b64(alg, a), sizeBytes: a.length };
      assert.equal(combineCrc(alg, [e, pa, e]), b64(alg, a), alg);
      assert.equal(combineCrc(alg, [pa]), b64(alg, a), alg);
      assert.equal(combineCrc(alg, [e, e]), b64(alg, empty), alg);
      assert.equal(combineCrc(alg, []), b64(alg, empty), alg);
    }
  });

  it('combines parts of many different sizes (memo eviction does not change results)', () => {
    for (const alg of CRCS) {
      const parts = Array.from({ length: 150 }, (_, i) => randomBytes(i + 1));
      const combined = combineCrc(alg, parts.map((p) => ({ checksumBase64: b64(alg, p), sizeBytes: p.length })));
      assert.equal(combined, b64(alg, Buffer.concat(parts)), alg);
    }
  });

  it('combines 10,000 parts of 5 GiB quickly enough for CompleteMultipartUpload', () => {
    // Only the cost is checked here (correctness is covered above): the per-size memo keeps it to one
    // GF(2) multiplication per part.
    for (const alg of CRCS) {
      const zeros = b64(alg, Buffer.alloc(0));
      const parts = Array.from({ length: 10_000 }, () => ({ checksumBase64: zeros, sizeBytes: 5 * 1024 ** 3 }));
      const t0 = Date.now();
      combineCrc(alg, parts);
      assert.ok(Date.now() - t0 < 2000, `${alg} took ${Date.now() - t0} ms`);
    }
  });

  it('refuses to combine non-CRC algorithms or invalid sizes', () => {
    assert.throws(() => combineCrc('SHA256' as CrcAlgorithm, []));
    assert.throws(() => combineCrc('CRC32', [{ checksumBase64: 'AAAAAA==', sizeBytes: -1 }]));
  });
});
