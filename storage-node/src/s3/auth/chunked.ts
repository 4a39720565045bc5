import { Transform, TransformCallback } from 'node:stream';
import { createHash, Hash } from 'node:crypto';
import { S3Error } from '../error';
import { EMPTY_SHA256_HEX, sha256Hex, signaturesEqual, signHex } from './sigv4';

/**
 * Decoder of aws-chunked request bodies (Content-Encoding: aws-chunked), streaming and in bounded
 * memory. Forms accepted:
 *   signed:            <hex>;chunk-signature=<sig>\r\n<data>\r\n ... 0;chunk-signature=<sig>\r\n\r\n
 *   signed + trailer:  ... 0;chunk-signature=<sig>\r\n[\r\n]name:value\r\n ... x-amz-trailer-signature:<sig>\r\n\r\n
 *   unsigned trailer:  <hex>\r\n<data>\r\n ... 0\r\nname:value\r\n ... \r\n
 * Tolerated as AWS does: other ';' extensions, a blank line between the final chunk and the trailer
 * (the form of AWS's own documentation example), and a body that stops without the final blank line.
 * Data is passed on as it arrives (subarrays, no copies); a chunk's signature is checked at the end
 * of the chunk, so the caller must commit only once the stream has ended without error.
 */

export interface ChunkSigning {
  signingKey: Buffer;
  seedSignature: string;
  amzDate: string;
  scope: string;
}

export interface ChunkedDecoderOptions {
  /** Present for STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]. */
  signing?: ChunkSigning;
  expectTrailer: boolean;
  /** From the x-amz-trailer header, lowercased. */
  declaredTrailers: string[];
  maxChunkHeaderBytes?: number;
  maxTrailerBytes?: number;
}

const DEFAULT_MAX_CHUNK_HEADER_BYTES = 4096;
const DEFAULT_MAX_TRAILER_BYTES = 8192;
const MAX_TRAILERS = 16;
const LF = 0x0a;
const CR = 0x0d;
const SIZE_RE = /^[0-9a-fA-F]{1,13}$/; // 13 hex digits stay below 2^53
const TRAILER_SIGNATURE = 'x-amz-trailer-signature';

type State =
  | 'header' // reading a chunk header line
  | 'data' // passing chunk data on
  | 'dataEnd' // expecting the CRLF after chunk data
  | 'end' // after the final chunk, no trailer expected: the closing CRLF
  | 'trailer' // trailer lines up to the blank line
  | 'done';

export class ChunkedDecoder extends Transform {
  /** Trailer values by lowercase name (without x-amz-trailer-signature); complete once the stream ended. */
  readonly trailers: Record<string, string> = {};
  /** Data bytes passed on so far. */
  decodedBytes = 0;

  private state: State = 'header';
  private readonly maxHeaderBytes: number;
  private readonly maxTrailerBytes: number;
  private readonly declared: Set<string>;
  /** An incomplete header or trailer line carried to the next input buffer; never above the line limit. */
  private pending: Buffer | null = null;
  private remaining = 0;
  private dataEndSeen = 0;
  private chunkHash: Hash | null = null;
  private chunkSignature = '';
  private prevSignature: string;
  private trailerBytes = 0;
  private readonly trailerLines: [string, string][] = [];
  private trailerSignature: string | undefined;
  private blankBeforeTrailer = false;

  constructor(private readonly opts: ChunkedDecoderOptions) {
    super();
    this.maxHeaderBytes = opts.maxChunkHeaderBytes ?? DEFAULT_MAX_CHUNK_HEADER_BYTES;
    this.maxTrailerBytes = opts.maxTrailerBytes ?? DEFAULT_MAX_TRAILER_BYTES;
    this.declared = new Set(opts.declaredTrailers.map((t) => t.trim().toLowerCase()).filter(Boolean));
    this.prevSignature = opts.signing?.seedSignature ?? '';
  }

  /** Bytes held back between input buffers (for tests of the memory bound). */
  get bufferedBytes(): number {
    return this.pending?.length ?? 0;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.consume(chunk);
      cb();
    } catch (e) {
      cb(e as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      this.finish();
      cb();
    } catch (e) {
      cb(e as Error);
    }
  }

  private consume(buf: Buffer): void {
    let pos = 0;
    while (pos < buf.length) {
      switch (this.state) {
        case 'header': {
          const r = this.readLine(buf, pos, this.maxHeaderBytes, 'chunk header');
          pos = r.next;
          if (r.line !== undefined) this.onChunkHeader(r.line);
          break;
        }
        case 'data': {
          const n = Math.min(this.remaining, buf.length - pos);
          const piece = buf.subarray(pos, pos + n);
          pos += n;
          this.remaining -= n;
          this.decodedBytes += n;
          this.chunkHash?.update(piece);
          this.push(piece);
          if (this.remaining === 0) this.onChunkDataEnd();
          break;
        }
        case 'dataEnd': {
          const expected = this.dataEndSeen === 0 ? CR : LF;
          if (buf[pos] !== expected) throw malformed('Chunk data is not followed by CRLF (chunk size does not match the data).');
          pos++;
          if (++this.dataEndSeen === 2) this.state = 'header';
          break;
        }
        case 'end': {
          const r = this.readLine(buf, pos, this.maxHeaderBytes, 'final line');
          pos = r.next;
          if (r.line === undefined) break;
          if (r.line !== '') throw malformed('Unexpected data after the final chunk (a trailer was not announced by x-amz-content-sha256).');
          this.state = 'done';
          break;
        }
        case 'trailer': {
          const r = this.readLine(buf, pos, this.maxTrailerBytes - this.trailerBytes, 'trailer');
          pos = r.next;
          if (r.line === undefined) break;
          this.trailerBytes += r.line.length + 2;
          this.onTrailerLine(r.line);
          break;
        }
        case 'done':
          throw malformed('Unexpected data after the end of the aws-chunked body.');
      }
    }
  }

  /**
   * Reads up to LF within maxBytes (+CRLF). Returns the line without CRLF, or only the new position
   * when the line continues in the next buffer (its start is then kept in `pending`).
   */
  private readLine(buf: Buffer, pos: number, maxBytes: number, what: string): { line?: string; next: number } {
    const held = this.pending?.length ?? 0;
    const window = Math.min(buf.length, pos + Math.max(0, maxBytes + 2 - held));
    const lf = buf.subarray(0, window).indexOf(LF, pos);
    if (lf < 0) {
      if (window < buf.length || held + (buf.length - pos) > maxBytes + 1) throw tooLong(what, maxBytes);
      const piece = buf.subarray(pos);
      this.pending = this.pending ? Buffer.concat([this.pending, piece]) : Buffer.from(piece);
      return { next: buf.length };
    }
    const part = buf.subarray(pos, lf);
    const line = this.pending ? Buffer.concat([this.pending, part]) : part;
    this.pending = null;
    if (line.length === 0 || line[line.length - 1] !== CR) throw malformed(`A ${what} line does not end with CRLF.`);
    return { line: line.toString('latin1', 0, line.length - 1), next: lf + 1 };
  }

  private onChunkHeader(line: string): void {
    const parts = line.split(';');
    const sizeText = parts[0]!.trim();
    if (!SIZE_RE.test(sizeText)) throw malformed('A chunk header does not start with a hexadecimal chunk size.');
    const size = parseInt(sizeText, 16);
    let signature: string | undefined;
    for (const ext of parts.slice(1)) {
      const eq = ext.indexOf('=');
      if (eq > 0 && ext.slice(0, eq).trim() === 'chunk-signature') signature = ext.slice(eq + 1).trim();
    }
    if (this.opts.signing) {
      if (signature === undefined) throw new S3Error('SignatureDoesNotMatch', 'A chunk of a signed aws-chunked body has no chunk-signature.');
      this.chunkSignature = signature;
    }
    if (size > 0) {
      this.state = 'data';
      this.remaining = size;
      this.chunkHash = this.opts.signing ? createHash('sha256') : null;
      return;
    }
    // The final, empty chunk.
    if (this.opts.signing) this.verifyChunk(EMPTY_SHA256_HEX);
    this.state = this.opts.expectTrailer ? 'trailer' : 'end';
  }

  private onChunkDataEnd(): void {
    if (this.chunkHash) {
      this.verifyChunk(this.chunkHash.digest('hex'));
      this.chunkHash = null;
    }
    this.state = 'dataEnd';
    this.dataEndSeen = 0;
  }

  private verifyChunk(dataSha256Hex: string): void {
    const s = this.opts.signing!;
    const toSign = `AWS4-HMAC-SHA256-PAYLOAD\n${s.amzDate}\n${s.scope}\n${this.prevSignature}\n${EMPTY_SHA256_HEX}\n${dataSha256Hex}`;
    if (!signaturesEqual(signHex(s.signingKey, toSign), this.chunkSignature)) {
      throw new S3Error('SignatureDoesNotMatch', 'The chunk signature does not match.');
    }
    this.prevSignature = this.chunkSignature;
  }

  private onTrailerLine(line: string): void {
    if (line === '') {
      if (this.trailerLines.length === 0 && this.trailerSignature === undefined && !this.blankBeforeTrailer) {
        // Either the end of a body without trailers, or the blank line some clients put before them.
        this.blankBeforeTrailer = true;
        return;
      }
      this.endTrailer();
      return;
    }
    if (this.trailerSignature !== undefined) throw malformed('x-amz-trailer-signature must be the last trailer.');
    const colon = line.indexOf(':');
    if (colon <= 0) throw malformed('A trailer line is not of the form name:value.');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === TRAILER_SIGNATURE) {
      // Meaningless without signing; ignored then, like the chunk-signature extension.
      if (this.opts.signing) this.trailerSignature = value;
      return;
    }
    if (!this.declared.has(name)) throw new S3Error('InvalidRequest', `The trailer ${name.slice(0, 64)} was not declared in x-amz-trailer.`);
    if (Object.prototype.hasOwnProperty.call(this.trailers, name)) throw new S3Error('InvalidRequest', `The trailer ${name} was sent twice.`);
    if (this.trailerLines.length >= MAX_TRAILERS) throw new S3Error('InvalidRequest', 'Too many trailers.');
    this.trailerLines.push([name, value]);
    this.trailers[name] = value;
  }

  private endTrailer(): void {
    for (const d of this.declared) {
      if (!Object.prototype.hasOwnProperty.call(this.trailers, d)) throw new S3Error('InvalidRequest', `The trailer ${d} was declared in x-amz-trailer but not sent.`);
    }
    const s = this.opts.signing;
    if (s && (this.trailerLines.length > 0 || this.trailerSignature !== undefined)) {
      if (this.trailerSignature === undefined) throw new S3Error('SignatureDoesNotMatch', 'The trailer of a signed aws-chunked body has no x-amz-trailer-signature.');
      const canonical = this.trailerLines.map(([n, v]) => `${n}:${v}\n`).join('');
      const toSign = `AWS4-HMAC-SHA256-TRAILER\n${s.amzDate}\n${s.scope}\n${this.prevSignature}\n${sha256Hex(canonical)}`;
      if (!signaturesEqual(signHex(s.signingKey, toSign), this.trailerSignature)) {
        throw new S3Error('SignatureDoesNotMatch', 'The trailer signature does not match.');
      }
    }
    this.state = 'done';
  }

  private finish(): void {
    switch (this.state) {
      case 'done':
        return;
      case 'end':
        // Tolerated: the closing CRLF (or its LF) is missing.
        if (this.pending && !(this.pending.length === 1 && this.pending[0] === CR)) throw incomplete();
        this.pending = null;
        this.state = 'done';
        return;
      case 'trailer':
        // Tolerated: the last trailer line without its CRLF, and no closing blank line.
        if (this.pending) {
          const p = this.pending;
          this.pending = null;
          this.onTrailerLine(p.toString('latin1', 0, p[p.length - 1] === CR ? p.length - 1 : p.length));
        }
        if (this.state === 'trailer') this.endTrailer();
        return;
      default:
        throw incomplete();
    }
  }
}

function malformed(message: string): S3Error {
  return new S3Error('InvalidArgument', `Malformed aws-chunked body: ${message}`, { ArgumentName: 'Content-Encoding', ArgumentValue: 'aws-chunked' });
}

function tooLong(what: string, maxBytes: number): S3Error {
  return malformed(`A ${what} line is longer than ${Math.max(0, maxBytes)} bytes.`);
}

function incomplete(): S3Error {
  return new S3Error('IncompleteBody', 'The aws-chunked body ended before its final chunk.');
}
