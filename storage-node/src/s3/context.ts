import crypto from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../util/logger';
import type { Store } from '../model/store';
import type { AuthResult } from './auth/sigv4';
import type { BucketRecord, GrantAccess } from '../meta/types';
import { accessIncludes } from '../meta/grants';
import { requiredAccess } from './access';
import { S3Error } from './error';
import { toXml, XmlObject } from './xml';

/** What the S3 layer needs from the node. */
export interface S3Services {
  store: Store;
  log: Logger;
  region: string;
  /** Virtual-hosted-style domains: <bucket>.<domain>. */
  domains: string[];
  /** Why the node cannot serve data right now (a grid node without a layout), or undefined. */
  unavailable?: () => string | undefined;
  /** Resolves once the node can serve or a short wait is over (a node joining a grid catches up first). */
  whenAvailable?: () => Promise<void>;
}

let seq = 0;
const prefix = crypto.randomBytes(4).toString('hex').toUpperCase();

function nextRequestId(): string {
  seq = (seq + 1) % 0x100000000;
  return prefix + seq.toString(16).toUpperCase().padStart(8, '0');
}

/** One S3 request: what was asked, who asked, and what the answer was (for audit and metrics). */
export class S3Context {
  readonly requestId = nextRequestId();
  readonly startMs = Date.now();
  readonly startHr = process.hrtime.bigint();
  operation = 'Unknown';
  bucket?: string;
  key?: string;
  /** Decoded query parameters (first value of each). */
  readonly query = new Map<string, string>();
  rawPath = '/';
  rawQuery = '';
  auth?: AuthResult;
  bytesIn = 0;
  bytesOut = 0;
  versionId?: string;
  errorCode?: string;
  /** Per-object outcomes of a batch request (DeleteObjects), audited one line each after the request's own. */
  readonly batchOutcomes: { key: string; versionId?: string; status: number; errorCode?: string }[] = [];
  /** Set once the body stream was handed to a consumer, so the error path knows whether it was read. */
  bodyConsumed = false;

  constructor(readonly req: IncomingMessage, readonly res: ServerResponse, readonly svc: S3Services) {
    res.setHeader('x-amz-request-id', this.requestId);
    res.setHeader('x-amz-id-2', this.requestId);
    res.setHeader('server', 'Archipel');
  }

  get accessKey(): string {
    if (!this.auth) throw new S3Error('AccessDenied');
    return this.auth.accessKeyId;
  }

  header(name: string): string | undefined {
    const v = this.req.headers[name];
    if (v === undefined) return undefined;
    return Array.isArray(v) ? v.join(',') : v;
  }

  has(q: string): boolean {
    return this.query.has(q);
  }

  /** The bucket of this request, which must exist and on which the caller has the access the operation needs. */
  authorizedBucket(): BucketRecord {
    if (!this.bucket) throw new S3Error('InvalidRequest', 'A bucket is required.');
    const b = this.svc.store.getBucket(this.bucket);
    this.requireAccess(b, requiredAccess(this.operation));
    return b;
  }

  /** AccessDenied unless the caller owns the bucket or a grant gives it at least `need` on it. */
  requireAccess(b: BucketRecord, need: GrantAccess): void {
    if (!accessIncludes(this.svc.store.bucketAccess(b, this.accessKey), need)) throw new S3Error('AccessDenied');
  }

  requireKey(): string {
    if (this.key === undefined || this.key === '') throw new S3Error('InvalidRequest', 'An object key is required.');
    return this.key;
  }

  sendXml(status: number, root: string, body: XmlObject, headers: Record<string, string> = {}): void {
    const text = toXml(root, body);
    const buf = Buffer.from(text, 'utf8');
    this.res.writeHead(status, { ...headers, 'content-type': 'application/xml', 'content-length': String(buf.length) });
    this.res.end(buf);
    this.bytesOut += buf.length;
  }

  sendEmpty(status: number, headers: Record<string, string> = {}): void {
    this.res.writeHead(status, { ...headers, 'content-length': '0' });
    this.res.end();
  }

  elapsedMs(): number {
    return Number(process.hrtime.bigint() - this.startHr) / 1e6;
  }
}

export type Handler = (ctx: S3Context) => Promise<void>;
