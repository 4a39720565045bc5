/**
 * The few admin API calls the local runtime makes to its nodes (the same API the operator uses),
 * each bounded by a timeout. Types come from the storage node's shared admin API types.
 */
import type { ApplyLayoutResponse, GetLayoutResponse, Layout, RebalanceStatus } from '../../storage-node/src/admin/api-types';
import { LocalError } from './state';

const REQUEST_TIMEOUT_MS = 3_000;

/** GET /v1/status, as far as the local runtime reads it; the optional parts come with later nodes. */
export interface NodeStatus {
  nodeId: string;
  site: string;
  uptimeSeconds?: number;
  grid?: { name: string; layoutVersion: number; inLayout: boolean; degraded: string[]; peers: { id: string; site: string; up: boolean }[] };
  storage?: { usedBytes?: number };
  repair?: { owedItems?: number; owedBytes?: number };
  /** This node's part in a layout transition (nodes from before transitions do not report it). */
  rebalance?: RebalanceStatus;
}

export class AdminClient {
  constructor(readonly host: string, readonly port: number, private readonly token: string) {}

  /** True when GET /ready answers 200 (the node serves S3); false on any other answer or no answer. */
  ready(): Promise<boolean> {
    return this.ok('/ready');
  }

  /**
   * True when GET /health answers 200: the process is up. A new grid node serves S3 (is ready) only
   * once it is in the layout, so the runtime adds nodes that are up, then waits for them to be ready.
   */
  up(): Promise<boolean> {
    return this.ok('/health');
  }

  private async ok(p: string): Promise<boolean> {
    try {
      const res = await fetch(this.url(p), { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      await res.arrayBuffer();
      return res.status === 200;
    } catch {
      return false;
    }
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

  private url(p: string): string {
    return `http://${this.host}:${this.port}${p}`;
  }

  private async call<T>(method: string, p: string, body?: unknown): Promise<T> {
    const res = await fetch(this.url(p), {
      method,
      headers: { authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const text = await res.text();
    if (res.status !== 200) {
      let message = text.slice(0, 500);
      try {
        message = (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? message;
      } catch {
        // not JSON: keep the text
      }
      throw new LocalError(`${method} ${p} on ${this.host}:${this.port}: ${res.status} ${message}`);
    }
    return JSON.parse(text) as T;
  }
}
