/**
 * The few admin API calls the local runtime makes to its nodes: the operator's admin client (the
 * same API the operator uses), with its refusals turned into the runtime's readable LocalError.
 */
import type { ApplyLayoutResponse, Layout } from '../../storage-node/src/admin/api-types';
import { AdminApi, AdminApiError, type NodeStatus } from '../../operator/src/admin/client';
import { LocalError } from './state';

export type { NodeStatus };

export class AdminClient {
  private readonly api: AdminApi;

  constructor(readonly host: string, readonly port: number, token: string) {
    this.api = new AdminApi(host, port, token);
  }

  /** True when GET /ready answers 200 (the node serves S3); false on any other answer or no answer. */
  ready(): Promise<boolean> {
    return this.api.ready();
  }

  /**
   * True when GET /health answers 200: the process is up. A new grid node serves S3 (is ready) only
   * once it is in the layout, so the runtime adds nodes that are up, then waits for them to be ready.
   */
  up(): Promise<boolean> {
    return this.api.up();
  }

  status(): Promise<NodeStatus> {
    return local(this.api.status());
  }

  layout(): Promise<Layout | null> {
    return local(this.api.layout());
  }

  applyLayout(layout: Layout): Promise<ApplyLayoutResponse> {
    return local(this.api.applyLayout(layout));
  }
}

function local<T>(p: Promise<T>): Promise<T> {
  return p.catch((e: unknown) => {
    throw e instanceof AdminApiError ? new LocalError(e.message) : e;
  });
}
