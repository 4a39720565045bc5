import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { S3Error } from '../error';
import { createHasher } from '../../util/checksum';
import { ChunkedDecoder, ChunkedDecoderOptions, ChunkSigning } from './chunked';
import { authenticate, deriveSigningKey, EMPTY_SHA256_HEX, sha256Hex, signHex } from './sigv4';

// ---------------------------------------------------------------------------------------------
// A test encoder: what an SDK puts on the wire.
// ---------------------------------------------------------------------------------------------

interface EncodeOptions {
  chunkSizes: number[];
  signing?: ChunkSigning;
  trailers?: [string, string][];
  /** The blank line between the final chunk and the trailer, as in AWS's documentation example. */
  blankBeforeTrailer?: boolean;
  /** The closing blank line (default true). */
  finalCrlf?: boolean;
  /** Corrupt the signature of this chunk (index; chunkSizes.length = the final chunk, +1 = trailer). */
  badSignatureAt?: number;
}

function chunkSig(s: ChunkSigning, prev: string, data: Buffer): string {
  return signHex(s.signingKey, `AWS4-HMAC-SHA256-PAYLOAD\n${s.amzDate}\n${s.scope}\n${prev}\n${EMPTY_SHA256_HEX}\n${sha256Hex(data)}`);
}

function trailerSig(s: ChunkSigning, prev: string, trailers: [string, string][]): string {
  const canonical = trailers.map(([n, v]) => `${n}:${v}\n`).join('');
  return signHex(s.signingKey, `AWS4-HMAC-SHA256-TRAILER\n${s.amzDate}\n${s.scope}\n${prev}\n${sha256Hex(canonical)}`);
}

function corrupt(sig: string): string {
  return (sig[0] === '0' ? '1' : '0') + sig.slice(1);
}

function encode(data: Buffer, o: EncodeOptions): Buffer {
  const out: Buffer[] = [];
  let prev = o.signing?.seedSignature ?? '';
  let off = 0;
  const sizes = [...o.chunkSizes.filter((n) => n > 0), 0];
  assert.equal(sizes.reduce((a, b) => a + b, 0), data.length, 'chunk sizes must add up to the data');
  sizes.forEach((size, i) => {
    const piece = data.subarray(off, off + size);
    off += size;
    let ext = '';
    if (o.signing) {
      let sig = chunkSig(o.signing, prev, piece);
      prev = sig;
      if (o.badSignatureAt === i) sig = corrupt(sig);
      ext = `;chunk-signature=${sig}`;
    }
    out.push(Buffer.from(`${size.toString(16)}${ext}\r\n`));
    if (size > 0) out.push(piece, Buffer.from('\r\n'));
  });
  if (o.trailers) {
    if (o.blankBeforeTrailer) out.push(Buffer.from('\r\n'));
    for (const [n, v] of o.trailers) out.push(Buffer.from(`${n}:${v}\r\n`));
    if (o.signing) {
      let sig = trailerSig(o.signing, prev, o.trailers);
      if (o.badSignatureAt === sizes.length) sig = corrupt(sig);
      out.push(Buffer.from(`x-amz-trailer-signature:${sig}\r\n`));
    }
  }
  if (o.finalCrlf ?? true) out.push(Buffer.from('\r\n'));
  return Buffer.concat(out);
}

function randomSizes(total: number, maxChunk: number): number[] {
  const sizes: number[] = [];
  let left = total;
  while (left > 0) {
    const n = Math.min(left, 1 + Math.floor(Math.random() * maxChunk));
    sizes.push(n);
    left -= n;
  }
  return sizes;
}

function splitRandomly(buf: Buffer, maxPiece: number): Buffer[] {
  const pieces: Buffer[] = [];
  for (let i = 0; i < buf.length;) {
    const n = 1 + Math.floor(Math.random() * maxPiece);
    pieces.push(buf.subarray(i, i + n));
    i += n;
  }
  return pieces;
}

function testSigning(): ChunkSigning {
  return {
    signingKey: deriveSigningKey('secret/key', '20261129', 'us-east-1'),
    seedSignature: randomBytes(32).toString('hex'),
    amzDate: '20261129T120000Z',
    scope: '20261129/us-east-1/s3/aws4_request',
  };
}

async function decode(input: Buffer | Buffer[], opts: ChunkedDecoderOptions): Promise<{ data: Buffer; decoder: ChunkedDecoder }> {
  const decoder = new ChunkedDecoder(opts);
  const parts: Buffer[] = [];
  await pipeline(Readable.from(Array.isArray(input) ? input : [input]), decoder, new Writable({
    write(chunk: Buffer, _enc, cb) {
      parts.push(chunk);
      cb();
    },
  }));
  return { data: Buffer.concat(parts), decoder };
}

async function expectDecodeError(input: Buffer | Buffer[], opts: ChunkedDecoderOptions, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(decode(input, opts), (e: unknown) => {
    assert.ok(e instanceof S3Error, `expected S3Error, got ${String(e)}`);
    assert.equal(e.code, code, `code (message: ${e.message})`);
    if (message) assert.match(e.message, message);
    return true;
  });
}

const CRC = 'x-amz-checksum-crc32';
function crc32b64(data: Buffer): string {
  const h = createHasher('CRC32');
  h.update(data);
  return h.digest().toString('base64');
}

/** The three wire formats, each with its decoder options. */
function formats(data: Buffer, chunkSizes: number[]): { name: string; body: Buffer; opts: ChunkedDecoderOptions }[] {
  const signing = testSigning();
  const trailers: [string, string][] = [[CRC, crc32b64(data)]];
  return [
    { name: 'signed', body: encode(data, { chunkSizes, signing }), opts: { signing, expectTrailer: false, declaredTrailers: [] } },
    { name: 'signed+trailer', body: encode(data, { chunkSizes, signing, trailers }), opts: { signing, expectTrailer: true, declaredTrailers: [CRC] } },
    { name: 'unsigned+trailer', body: encode(data, { chunkSizes, trailers }), opts: { expectTrailer: true, declaredTrailers: [CRC] } },
  ];
}

describe('aws-chunked decoder', () => {
  describe("AWS's published examples", () => {
    const exKey = deriveSigningKey('wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', '20130524', 'us-east-1');
    const ex = (seedSignature: string): ChunkSigning => ({ signingKey: exKey, seedSignature, amzDate: '20130524T000000Z', scope: '20130524/us-east-1/s3/aws4_request' });
    const a64k = Buffer.alloc(65536, 'a');
    const a1k = Buffer.alloc(1024, 'a');

    it('decodes the signed chunked upload example', async () => {
      const body = Buffer.concat([
        Buffer.from('10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n'), a64k, Buffer.from('\r\n'),
        Buffer.from('400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n'), a1k, Buffer.from('\r\n'),
        Buffer.from('0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n'),
      ]);
      assert.equal(body.length, 66824); // the Content-Length of the example
      const { data, decoder } = await decode(body, { signing: ex('4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9'), expectTrailer: false, declaredTrailers: [] });
      assert.deepEqual(data, Buffer.concat([a64k, a1k]));
      assert.equal(decoder.decodedBytes, 66560);
    });

    it('decodes the signed upload with a trailing checksum example (blank line before the trailer, no closing line)', async () => {
      const head = Buffer.concat([
        Buffer.from('10000;chunk-signature=b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2\r\n'), a64k, Buffer.from('\r\n'),
        Buffer.from('400;chunk-signature=1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7\r\n'), a1k, Buffer.from('\r\n'),
        Buffer.from('0;chunk-signature=2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n\r\n'),
        Buffer.from('x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435'),
      ]);
      const opts = { signing: ex('106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e'), expectTrailer: true, declaredTrailers: ['x-amz-checksum-crc32c'] };
      for (const body of [head, Buffer.concat([head, Buffer.from('\r\n\r\n')])]) {
        const { data, decoder } = await decode(body, opts);
        assert.equal(data.length, 66560);
        assert.deepEqual(decoder.trailers, { 'x-amz-checksum-crc32c': 'sOO8/Q==' });
        const crc = createHasher('CRC32C');
        crc.update(data);
        assert.equal(crc.digest().toString('base64'), 'sOO8/Q==');
      }
      await expectDecodeError(Buffer.from(head.toString('latin1').replace('sOO8/Q==', 'AAAAAA=='), 'latin1'), opts, 'SignatureDoesNotMatch');
    });
  });

  describe('decoding', () => {
    it('decodes every format with random chunk sizes and random input splits', async () => {
      for (let trial = 0; trial < 30; trial++) {
        const data = randomBytes(Math.floor(Math.random() * 200_000));
        for (const f of formats(data, randomSizes(data.length, 70_000))) {
          const { data: out, decoder } = await decode(splitRandomly(f.body, 1 + Math.floor(Math.random() * 100_000)), f.opts);
          assert.ok(out.equals(data), `${f.name} trial ${trial}`);
          assert.equal(decoder.decodedBytes, data.length);
          if (f.opts.expectTrailer) assert.deepEqual(decoder.trailers, { [CRC]: crc32b64(data) });
        }
      }
    });

    it('decodes an empty body', async () => {
      for (const f of formats(Buffer.alloc(0), [])) {
        const { data } = await decode(f.body, f.opts);
        assert.equal(data.length, 0, f.name);
      }
    });

    it('decodes input fed one byte at a time', async () => {
      const data = randomBytes(300);
      for (const f of formats(data, [100, 1, 150, 49])) {
        const bytes = Array.from({ length: f.body.length }, (_, i) => f.body.subarray(i, i + 1));
        const { data: out, decoder } = await decode(bytes, f.opts);
        assert.ok(out.equals(data), f.name);
        if (f.opts.expectTrailer) assert.equal(decoder.trailers[CRC], crc32b64(data));
      }
    });

    it('decodes input split in two at every byte boundary', async () => {
      const data = randomBytes(40);
      for (const f of formats(data, [17, 23])) {
        for (let i = 0; i <= f.body.length; i++) {
          const { data: out } = await decode([f.body.subarray(0, i), f.body.subarray(i)], f.opts);
          assert.ok(out.equals(data), `${f.name} split at ${i}`);
        }
      }
    });

    it('passes data on as subarrays of the input, without waiting for the end of a chunk', async () => {
      const signing = testSigning();
      const data = randomBytes(3 << 20);
      const body = encode(data, { chunkSizes: [data.length], signing });
      const decoder = new ChunkedDecoder({ signing, expectTrailer: false, declaredTrailers: [] });
      const seen: Buffer[] = [];
      decoder.on('data', (b: Buffer) => seen.push(b));
      decoder.write(body.subarray(0, 1 << 20));
      await new Promise((r) => setImmediate(r));
      assert.ok(seen.length > 0 && decoder.decodedBytes > 0, 'bytes of an unfinished chunk were passed on');
      assert.ok(seen.every((b) => b.buffer === body.buffer), 'no copies');
      decoder.end(body.subarray(1 << 20));
      await new Promise((r) => decoder.on('end', r));
      assert.ok(Buffer.concat(seen).equals(data));
    });

    it('tolerates chunk extensions, a blank line before the trailer, and a missing closing line', async () => {
      const data = Buffer.from('hello world');
      const t: [string, string][] = [[CRC, crc32b64(data)]];
      const unsignedOpts = { expectTrailer: true, declaredTrailers: [CRC] };
      const ext = Buffer.from(`5;foo=bar\r\nhello\r\n6;chunk-signature=${'0'.repeat(64)}\r\n world\r\n0\r\n${CRC}:${t[0]![1]}\r\n\r\n`);
      assert.equal((await decode(ext, unsignedOpts)).data.toString(), 'hello world');
      for (const variant of [{ blankBeforeTrailer: true }, { finalCrlf: false }, { blankBeforeTrailer: true, finalCrlf: false }]) {
        const { decoder } = await decode(encode(data, { chunkSizes: [5, 6], trailers: t, ...variant }), unsignedOpts);
        assert.equal(decoder.trailers[CRC], t[0]![1], JSON.stringify(variant));
        const signing = testSigning();
        const signed = await decode(encode(data, { chunkSizes: [5, 6], trailers: t, signing, ...variant }), { ...unsignedOpts, signing });
        assert.equal(signed.decoder.trailers[CRC], t[0]![1], `signed ${JSON.stringify(variant)}`);
      }
      const signing = testSigning();
      const noClose = encode(data, { chunkSizes: [11], signing, finalCrlf: false });
      assert.equal((await decode(noClose, { signing, expectTrailer: false, declaredTrailers: [] })).data.toString(), 'hello world');
    });

    it('accepts a STREAMING-UNSIGNED-PAYLOAD-TRAILER body without any trailer when none was declared', async () => {
      const { data } = await decode(Buffer.from('3\r\nabc\r\n0\r\n\r\n'), { expectTrailer: true, declaredTrailers: [] });
      assert.equal(data.toString(), 'abc');
    });
  });

  describe('refusals', () => {
    it('refuses a bad chunk signature in the middle, on the final chunk and on the trailer', async () => {
      const data = randomBytes(5000);
      const signing = testSigning();
      const trailers: [string, string][] = [[CRC, crc32b64(data)]];
      const opts = { signing, expectTrailer: true, declaredTrailers: [CRC] };
      for (const at of [0, 1, 2, 3, 4]) {
        await expectDecodeError(encode(data, { chunkSizes: [1000, 2000, 2000], signing, trailers, badSignatureAt: at }), opts, 'SignatureDoesNotMatch');
      }
    });

    it('refuses chunks whose signatures are reordered or replayed', async () => {
      const signing = testSigning();
      const opts = { signing, expectTrailer: false, declaredTrailers: [] };
      const a = encode(Buffer.from('aaaa'), { chunkSizes: [4], signing });
      const b = encode(Buffer.from('bbbb'), { chunkSizes: [4], signing });
      // The first chunk of b's stream, put in a's stream: its signature does not chain from a's.
      const spliced = Buffer.concat([a.subarray(0, a.indexOf('\r\n0;')), Buffer.from('\r\n'), b.subarray(0, b.indexOf('\r\n0;')), a.subarray(a.indexOf('\r\n0;'))]);
      await expectDecodeError(spliced, opts, 'SignatureDoesNotMatch');
    });

    it('refuses a signed body with a chunk without signature', async () => {
      const signing = testSigning();
      await expectDecodeError(Buffer.from('3\r\nabc\r\n0\r\n\r\n'), { signing, expectTrailer: false, declaredTrailers: [] }, 'SignatureDoesNotMatch', /no chunk-signature/);
    });

    it('refuses a truncated body wherever it is cut', async () => {
      const data = randomBytes(300);
      for (const f of formats(data, [100, 200])) {
        const end = f.body.indexOf(f.opts.signing ? '\r\n0;' : '\r\n0\r\n') + 2;
        for (let cut = 0; cut < end + 3; cut++) {
          await expectDecodeError(f.body.subarray(0, cut), f.opts, 'IncompleteBody', undefined);
        }
      }
    });

    it('refuses a truncated trailer', async () => {
      const data = randomBytes(30);
      const signing = testSigning();
      const body = encode(data, { chunkSizes: [30], signing, trailers: [[CRC, crc32b64(data)]] });
      const sigAt = body.indexOf('x-amz-trailer-signature');
      await expectDecodeError(body.subarray(0, sigAt), { signing, expectTrailer: true, declaredTrailers: [CRC] }, 'SignatureDoesNotMatch', /no x-amz-trailer-signature/);
      await expectDecodeError(body.subarray(0, sigAt + 40), { signing, expectTrailer: true, declaredTrailers: [CRC] }, 'SignatureDoesNotMatch');
      const unsigned = encode(data, { chunkSizes: [30], trailers: [[CRC, crc32b64(data)]] });
      await expectDecodeError(unsigned.subarray(0, unsigned.indexOf(CRC) + 5), { expectTrailer: true, declaredTrailers: [CRC] }, 'InvalidArgument');
    });

    it('refuses bytes after the end of the body', async () => {
      for (const f of formats(randomBytes(10), [10])) {
        await expectDecodeError(Buffer.concat([f.body, Buffer.from('X')]), f.opts, 'InvalidArgument', /after the (end|final)/);
      }
    });

    it('refuses a chunk whose data is longer or shorter than its size', async () => {
      await expectDecodeError(Buffer.from('3\r\nabcd\r\n0\r\n\r\n'), { expectTrailer: true, declaredTrailers: [] }, 'InvalidArgument', /CRLF/);
      await expectDecodeError(Buffer.from('5\r\nabc\r\n0\r\n\r\n'), { expectTrailer: true, declaredTrailers: [] }, 'InvalidArgument', /CRLF/);
    });

    it('refuses malformed chunk headers', async () => {
      const opts = { expectTrailer: true, declaredTrailers: [] };
      for (const body of ['zz\r\nabc\r\n0\r\n\r\n', '\r\n3\r\nabc\r\n0\r\n\r\n', '-3\r\nabc\r\n0\r\n\r\n', '3\nabc\r\n0\r\n\r\n', '10000000000000\r\n']) {
        await expectDecodeError(Buffer.from(body), opts, 'InvalidArgument');
      }
    });

    it('refuses an oversized chunk header line or trailer, however it is split', async () => {
      const long = Buffer.from(`3;${'x'.repeat(5000)}\r\nabc\r\n0\r\n\r\n`);
      await expectDecodeError(long, { expectTrailer: true, declaredTrailers: [] }, 'InvalidArgument', /longer than 4096/);
      await expectDecodeError(splitRandomly(long, 100), { expectTrailer: true, declaredTrailers: [] }, 'InvalidArgument', /longer than 4096/);
      await expectDecodeError(Buffer.from('3;' + 'x'.repeat(100)), { expectTrailer: true, declaredTrailers: [], maxChunkHeaderBytes: 50 }, 'InvalidArgument', /longer than 50/);
      const bigTrailer = Buffer.from(`3\r\nabc\r\n0\r\n${CRC}:${'A'.repeat(9000)}\r\n\r\n`);
      await expectDecodeError(splitRandomly(bigTrailer, 1000), { expectTrailer: true, declaredTrailers: [CRC] }, 'InvalidArgument', /trailer/);
    });

    it('refuses a trailer not declared in x-amz-trailer, a declared one missing, and duplicates', async () => {
      const data = Buffer.from('abc');
      const v = crc32b64(data);
      const opts = { expectTrailer: true, declaredTrailers: [CRC] };
      await expectDecodeError(encode(data, { chunkSizes: [3], trailers: [['x-amz-checksum-sha256', v]] }), opts, 'InvalidRequest', /not declared/);
      await expectDecodeError(encode(data, { chunkSizes: [3], trailers: [] }), opts, 'InvalidRequest', /declared .* but not sent/);
      await expectDecodeError(encode(data, { chunkSizes: [3] }), opts, 'InvalidRequest', /declared .* but not sent/);
      await expectDecodeError(encode(data, { chunkSizes: [3], trailers: [[CRC, v], [CRC, v]] }), opts, 'InvalidRequest', /twice/);
      await expectDecodeError(encode(data, { chunkSizes: [3], trailers: [[CRC, v]] }), { expectTrailer: false, declaredTrailers: [] }, 'InvalidArgument');
    });
  });

  describe('memory', () => {
    it('streams a 50 MiB signed body with bounded buffers', async function () {
      this.timeout(120_000);
      const signing = testSigning();
      const blocks = Array.from({ length: 16 }, () => randomBytes(64 << 10));
      const sizes = [...Array.from({ length: 700 }, () => 64 << 10), 5 << 20, 123_457, 1]; // ~50 MiB, one 5 MiB chunk
      const total = sizes.reduce((a, b) => a + b, 0);
      const expected = createHash('sha256');
      let blockIdx = 0;
      /** The data of one chunk, as pieces of at most 64 KiB taken from the pre-made blocks. */
      const chunkPieces = (size: number): Buffer[] => {
        const pieces: Buffer[] = [];
        for (let left = size; left > 0;) {
          const b = blocks[blockIdx++ % blocks.length]!;
          const n = Math.min(left, b.length);
          pieces.push(b.subarray(0, n));
          left -= n;
        }
        return pieces;
      };
      async function* wire(): AsyncGenerator<Buffer> {
        let prev = signing.seedSignature;
        for (const size of [...sizes, 0]) {
          const pieces = chunkPieces(size);
          const h = createHash('sha256');
          for (const p of pieces) h.update(p);
          const sig = signHex(signing.signingKey, `AWS4-HMAC-SHA256-PAYLOAD\n${signing.amzDate}\n${signing.scope}\n${prev}\n${EMPTY_SHA256_HEX}\n${h.digest('hex')}`);
          prev = sig;
          yield Buffer.from(`${size.toString(16)};chunk-signature=${sig}\r\n`);
          for (const p of pieces) {
            expected.update(p);
            // Split each piece once, so that reads end in the middle of chunk data.
            const cut = Math.floor(Math.random() * p.length);
            yield p.subarray(0, cut);
            yield p.subarray(cut);
          }
          if (size > 0) yield Buffer.from('\r\n');
        }
        yield Buffer.from('\r\n');
      }
      const decoder = new ChunkedDecoder({ signing, expectTrailer: false, declaredTrailers: [] });
      const got = createHash('sha256');
      let maxEmittedBytes = 0;
      let maxHeldBytes = 0;
      let maxQueuedBytes = 0;
      await pipeline(Readable.from(wire()), decoder, new Writable({
        highWaterMark: 1 << 20,
        write(chunk: Buffer, _enc, cb) {
          maxEmittedBytes = Math.max(maxEmittedBytes, chunk.length);
          maxHeldBytes = Math.max(maxHeldBytes, decoder.bufferedBytes);
          maxQueuedBytes = Math.max(maxQueuedBytes, decoder.readableLength);
          got.update(chunk);
          setImmediate(cb); // a consumer slower than the producer
        },
      }));
      assert.equal(decoder.decodedBytes, total);
      assert.equal(got.digest('hex'), expected.digest('hex'));
      assert.ok(maxEmittedBytes <= 1 << 20, `largest buffer passed on: ${maxEmittedBytes}`);
      assert.ok(maxHeldBytes <= 4096, `largest partial line held: ${maxHeldBytes}`);
      assert.ok(maxQueuedBytes <= 1 << 20, `largest readable queue: ${maxQueuedBytes}`);
    });
  });

  describe('with the AWS SDK', () => {
    const AK = 'SDKTESTKEY';
    const SECRET = 'sdk/test+secret';
    let server: http.Server;
    let endpoint: string;
    let received: { payload: string; data: Buffer; trailers: Record<string, string>; headers: http.IncomingHttpHeaders } | undefined;
    let serverError: unknown;

    before(async () => {
      server = http.createServer((req, res) => {
        void (async () => {
          try {
            const url = req.url ?? '/';
            const q = url.indexOf('?');
            const auth = authenticate(
              { method: req.method ?? 'GET', rawPath: q < 0 ? url : url.slice(0, q), rawQuery: q < 0 ? '' : url.slice(q + 1), headers: req.headers },
              (id) => (id === AK ? SECRET : undefined), { nowMs: Date.now() },
            );
            assert.ok(auth, 'request is signed');
            const parts: Buffer[] = [];
            const sink = new Writable({ write(c: Buffer, _e, cb) { parts.push(c); cb(); } });
            let decoder: ChunkedDecoder | undefined;
            const p = auth.payload;
            if (p.kind === 'streaming-signed' || p.kind === 'streaming-unsigned-trailer') {
              decoder = new ChunkedDecoder({
                signing: p.kind === 'streaming-signed' ? auth : undefined,
                expectTrailer: p.kind === 'streaming-unsigned-trailer' || p.trailer,
                declaredTrailers: String(req.headers['x-amz-trailer'] ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean),
              });
              await pipeline(req, decoder, sink);
            } else {
              await pipeline(req, sink);
            }
            const data = Buffer.concat(parts);
            if (p.kind === 'sha256') assert.equal(sha256Hex(data), p.hex);
            received = { payload: p.kind, data, trailers: { ...decoder?.trailers }, headers: req.headers };
            res.writeHead(200, { ETag: `"${createHash('md5').update(data).digest('hex')}"` });
            res.end();
          } catch (e) {
            serverError = e;
            res.writeHead(400);
            res.end();
          }
        })();
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });

    after(async () => {
      await new Promise((r) => server.close(r));
    });

    beforeEach(() => {
      received = undefined;
      serverError = undefined;
    });

    function client(): S3Client {
      return new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials: { accessKeyId: AK, secretAccessKey: SECRET } });
    }

    it('receives a PutObject with a Buffer body as sent', async () => {
      const c = client();
      const body = randomBytes(300_000);
      await c.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'dir/a b+c.bin', Body: body }));
      c.destroy();
      assert.equal(serverError, undefined, String(serverError));
      assert.ok(received?.data.equals(body));
      const crc = received!.headers[CRC] ?? received!.trailers[CRC];
      if (crc !== undefined) assert.equal(crc, crc32b64(body));
    });

    it('decodes a PutObject with a stream body (aws-chunked, STREAMING-UNSIGNED-PAYLOAD-TRAILER, CRC32 trailer)', async () => {
      const c = client();
      const body = randomBytes(1_000_003);
      const stream = Readable.from(splitRandomly(body, 100_000));
      await c.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'streamed.bin', Body: stream, ContentLength: body.length }));
      c.destroy();
      assert.equal(serverError, undefined, String(serverError));
      assert.equal(received?.payload, 'streaming-unsigned-trailer');
      assert.ok(received!.data.equals(body), 'decoded bytes are the bytes sent');
      assert.equal(received!.headers['x-amz-decoded-content-length'], String(body.length));
      assert.equal(received!.trailers[CRC], crc32b64(body));
    });
  });
});
