// A storage node's membership of a grid: the layout it holds, its RPC listener and client, and the
// admin routes through which a layout is applied (docs/decisions/0008-cluster-design.md).
import type { GridConfig, NodeConfig } from '../config';
import type { ApplyLayoutResponse, GetLayoutResponse } from '../admin/api-types';
import { AdminError, AdminRoute, readJsonBody, sendJson } from '../admin/server';
import type { Layout } from '../layout/types';
import { PeerHealth, RpcClient, RpcError, RpcRoute, RpcServer, startRpcServer } from '../rpc';
import type { Logger } from '../util/logger';
import { LayoutRejectedError, LayoutState } from './layout-state';
import { Membership } from './membership';

/** Layouts are small but not tiny (4096 nodes with addresses): a bound for the admin body. */
const MAX_LAYOUT_BODY_BYTES = 4 * 1024 * 1024;

export interface GridStatus {
  name: string;
  layoutVersion: number;
  /** False when the held layout does not list this node (not yet added, or removed). */
  inLayout: boolean;
  /** Policies that cannot get all their copies under the current layout. */
  degraded: readonly string[];
  peers: { id: string; site: string; up: boolean }[];
}

export interface GridRuntime {
  readonly layout: LayoutState;
  readonly rpc: RpcClient;
  readonly rpcPort: number;
  readonly membership: Membership;
  /** Why S3 requests cannot be served yet, or undefined when they can. */
  unavailable(): string | undefined;
  status(): GridStatus;
  adminRoutes(): AdminRoute[];
  /** Adds RPC routes to the running listener (services built after it started, such as the store). */
  addRoutes(routes: RpcRoute[]): void;
  stop(deadlineMs: number): Promise<void>;
}

export interface StartGridOptions {
  /** More RPC routes (the replica services); registered before the listener starts. */
  routes?: RpcRoute[];
  gossipIntervalMs?: number;
}

export async function startGrid(cfg: NodeConfig, grid: GridConfig, log: Logger, opts: StartGridOptions = {}): Promise<GridRuntime> {
  const layout = new LayoutState(cfg.dataDir, cfg.node.id, log);
  const health = new PeerHealth();
  let membership: Membership | undefined;
  const rpc = new RpcClient({
    nodeId: cfg.node.id, secrets: grid.secrets, logger: log, health,
    onLayoutVersion: (peerId, version) => membership?.onPeerVersion(peerId, version),
  });
  membership = new Membership(layout, rpc, { logger: log, gossipIntervalMs: opts.gossipIntervalMs });
  // The server reads this array on every request, so routes added later (addRoutes) are served.
  // A node serves data to its peers only under a layout: without one it cannot know what it should hold.
  const needLayout = (r: RpcRoute): RpcRoute => ({
    ...r,
    handler: (req, res) => {
      if (layout.current === undefined) throw new RpcError(503, 'NoLayout', `node ${cfg.node.id} has no layout yet`);
      return r.handler(req, res);
    },
  });
  const routes: RpcRoute[] = [...membership.routes(), ...(opts.routes ?? []).map(needLayout)];
  const server: RpcServer = await startRpcServer({
    host: grid.rpc.host, port: grid.rpc.port, secrets: grid.secrets, nodeId: cfg.node.id, logger: log,
    maxConcurrent: grid.rpc.maxConcurrent, layoutVersion: () => layout.version,
    routes,
  });
  membership.start();
  const m = membership;

  const unavailable = (): string | undefined => {
    if (layout.current === undefined) return 'This node has not received the grid layout yet.';
    const self = layout.self;
    if (self === undefined) return `This node is not part of layout version ${layout.version}.`;
    if (self.state === 'failed') return 'This node is marked failed in the layout.';
    return undefined;
  };

  const status = (): GridStatus => ({
    name: grid.name,
    layoutVersion: layout.version,
    inLayout: layout.self !== undefined,
    degraded: layout.degraded,
    peers: (layout.current?.nodes ?? []).filter((n) => n.id !== cfg.node.id)
      .map((n) => ({ id: n.id, site: n.site, up: health.isUp(n.id) })),
  });

  const adminRoutes = (): AdminRoute[] => [
    {
      method: 'GET', path: '/v1/layout', auth: true,
      handler: async (_req, res) => sendJson(res, 200, { layout: layout.current ?? null } satisfies GetLayoutResponse),
    },
    {
      method: 'PUT', path: '/v1/layout', auth: true,
      handler: async (req, res) => {
        const body = (await readJsonBody(req, MAX_LAYOUT_BODY_BYTES)) as { layout?: Layout } | undefined;
        if (body === null || typeof body !== 'object' || body.layout === undefined) {
          throw new AdminError(400, 'InvalidRequest', 'the body must be {"layout": {...}}');
        }
        try {
          sendJson(res, 200, layout.apply(body.layout) satisfies ApplyLayoutResponse);
        } catch (e) {
          if (e instanceof LayoutRejectedError) throw new AdminError(422, 'InvalidLayout', e.message);
          throw e;
        }
      },
    },
  ];

  return {
    layout, rpc, membership: m, rpcPort: server.port, unavailable, status, adminRoutes,
    addRoutes: (more) => {
      routes.push(...more.map(needLayout));
    },
    stop: async (deadlineMs: number) => {
      m.stop();
      await server.close(deadlineMs);
      rpc.close();
    },
  };
}
