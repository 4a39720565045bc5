/**
 * The storage node's admin API as the operator (and the local runtime) call it: layout, status,
 * buckets, access keys. Every call is bounded by a timeout; a refusal is an AdminApiError with the
 * node's status, code and message. Types come from the storage node's shared admin API types (types
 * only: no storage-node code is loaded).
 */
import type {
  ApplyLayoutResponse, BucketInfo, CreateAccessKeyRequest, CreateAccessKeyResponse, CreateBucketRequest, AccessKeyInfo, AccessGrant,
  GetLayoutResponse, Layout, RebalanceStatus,
} from '../../../storage-node/src/admin/api-types';

export const ADMIN_TIMEOUT_MS = 3_000;

/** GET /v1/status, as far as callers read it; the optional parts depend on the node's role and version. */
export interface NodeStatus {
  nodeId: string;
  site: string;
  uptimeSeconds?: number;
  grid?: { name: string; layoutVersion: number; inLayout: boolean; degraded: string[]; peers: { id: string; site: string; up: boolean }[] };
  storage?: { usedBytes?: number };
  repair?: { owedItems?: number; owedBytes?: number };
  rebalance?: RebalanceStatus;
}

/** A refusal or failure of an admin call: `status` 0 when no answer came (refused, timed out). */
export class AdminApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
    this.name = 'AdminApiError';
  }
}

export class AdminApi {
  constructor(readonly host: string, readonly port: number, private readonly token: string, private readonly timeoutMs = ADMIN_TIMEOUT_MS) {}

  /** GET /health = 200: the node process is up. */
  up(): Promise<boolean> {
    return this.ok('/health');
  }

  /** GET /ready = 200: the node serves S3 (in a grid: it holds a layout listing it and has caught up). */
  ready(): Promise<boolean> {
    return this.ok('/ready');
  }

  status(): Promise<NodeStatus> {
    return this.call<NodeStatus>('GET', '/v1/status');
  }

  async layout(): Promise<Layout | null> {
    return (await this.call<GetLayoutResponse>('GET', '/v1/layout')).layout;
  }

  applyLayout(layout: Layout): Promise<ApplyLayoutResponse> {
    return this.call<ApplyLayoutResponse>('PUT', '/v1/layout', { layout });
  }

  createBucket(req: CreateBucketRequest): Promise<BucketInfo> {
    return this.call<BucketInfo>('POST', '/v1/buckets', req);
  }

  /** The bucket, or undefined when there is none. */
  async bucket(name: string): Promise<BucketInfo | undefined> {
    return this.call<BucketInfo>('GET', `/v1/buckets/${encodeURIComponent(name)}`).catch((e) => absent<BucketInfo>(e));
  }

  /** Deletes an empty bucket; AdminApiError 409 BucketNotEmpty otherwise. */
  async deleteBucket(name: string): Promise<void> {
    await this.call('DELETE', `/v1/buckets/${encodeURIComponent(name)}`);
  }

  createKey(req: CreateAccessKeyRequest): Promise<CreateAccessKeyResponse> {
    return this.call<CreateAccessKeyResponse>('POST', '/v1/keys', req);
  }

  /** The key (without its secret), or undefined when there is none (or it was revoked). */
  async key(accessKeyId: string): Promise<AccessKeyInfo | undefined> {
    return this.call<AccessKeyInfo>('GET', `/v1/keys/${encodeURIComponent(accessKeyId)}`).catch((e) => absent<AccessKeyInfo>(e));
  }

  setGrants(accessKeyId: string, grants: AccessGrant[]): Promise<AccessKeyInfo> {
    return this.call<AccessKeyInfo>('PUT', `/v1/keys/${encodeURIComponent(accessKeyId)}/grants`, { grants });
  }

  async revokeKey(accessKeyId: string): Promise<void> {
    await this.call('DELETE', `/v1/keys/${encodeURIComponent(accessKeyId)}`);
  }

  private url(p: string): string {
    const host = this.host.includes(':') && !this.host.startsWith('[') ? `[${this.host}]` : this.host;
    return `http://${host}:${this.port}${p}`;
  }

  private async ok(p: string): Promise<boolean> {
    try {
      const res = await fetch(this.url(p), { signal: AbortSignal.timeout(this.timeoutMs) });
      await res.arrayBuffer();
      return res.status === 200;
    } catch {
      return false;
    }
  }

  private async call<T>(method: string, p: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(this.url(p), {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (e) {
      throw new AdminApiError(0, 'Unreachable', `${method} ${p} on ${this.host}:${this.port}: ${(e as Error).message}`);
    }
    const text = await res.text();
    if (res.status < 200 || res.status > 299) {
      let code = 'Error';
      let message = text.slice(0, 500);
      try {
        const err = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
        code = err?.code ?? code;
        message = err?.message ?? message;
      } catch {
        // not JSON: keep the text
      }
      throw new AdminApiError(res.status, code, `${method} ${p} on ${this.host}:${this.port}: ${res.status} ${message}`);
    }
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }
}

function absent<T>(e: unknown): T | undefined {
  if (e instanceof AdminApiError && e.status === 404) return undefined;
  throw e;
}
