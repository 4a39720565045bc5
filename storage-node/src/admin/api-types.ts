/**
 * The admin API's shared types: what the operator and the local runtime send to a storage node's
 * admin port and what they get back. Types only (no values), so the operator can `import type`
 * this file without depending on the storage node's code. Bodies are JSON.
 */
export type {
  IngestMode, Layout, LayoutNode, NodeState, PolicyMatch, PolicyRule, ReplicationPolicy, SiteInfo, SiteRole, SiteState,
} from '../layout/types';
import type { Layout } from '../layout/types';

/** PUT /v1/layout (admin port, bearer token): a node accepts a layout whose version is higher than its own. */
export interface ApplyLayoutRequest {
  layout: Layout;
}

export interface ApplyLayoutResponse {
  /** The version the node now holds (the request's, or a higher one it already had). */
  version: number;
  /** False when the node already had this version or a newer one. */
  applied: boolean;
}

/** GET /v1/layout (admin port, bearer token) */
export interface GetLayoutResponse {
  layout: Layout | null;
}

/** Body of every admin refusal (see AdminError in server.ts). */
export interface AdminErrorBody {
  error: { code: string; message: string };
}
