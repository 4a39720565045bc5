// Layout agreement between the nodes of a grid: push on change, pull when a peer reports a newer
// version (every RPC response carries it), and a slow gossip tick so an idle grid converges too.
import type { Layout, LayoutNode } from '../layout/types';
import { PeerBusyError, PeerTimeoutError, PeerUnavailableError, RpcClient, RpcError, RpcPeer, RpcRoute } from '../rpc';
import { Logger, silentLogger } from '../util/logger';
import { LayoutHistory, LayoutRejectedError, LayoutState } from './layout-state';

export const LAYOUT_PATH = '/_rpc/layout';

export interface MembershipOptions {
  /** Period of the gossip tick (one ping to one random peer). */
  gossipIntervalMs?: number;
  logger?: Logger;
}

export function peerOf(n: LayoutNode): RpcPeer {
  return { id: n.id, address: n.rpcAddress };
}

/** An error a peer call may end with when the peer is down, slow or busy: not worth a log line each. */
export function isPeerFailure(e: unknown): boolean {
  return e instanceof PeerUnavailableError || e instanceof PeerTimeoutError || e instanceof PeerBusyError;
}

/**
 * Keeps this node's layout in step with its peers. Versions only go up, so the exchange needs no
 * coordination: whoever has the higher version hands it over, and every node ends with the highest.
 */
export class Membership {
  private readonly log: Logger;
  private readonly gossipIntervalMs: number;
  private timer: NodeJS.Timeout | undefined;
  /** Peers a push or pull is running with (at most one exchange per peer at a time). */
  private readonly busy = new Set<string>();
  private stopped = false;

  constructor(readonly state: LayoutState, private readonly rpc: RpcClient, opts: MembershipOptions = {}) {
    this.log = opts.logger ?? silentLogger();
    this.gossipIntervalMs = opts.gossipIntervalMs ?? 1_000;
    state.on('change', (next: Layout, previous: Layout | undefined) => {
      // Nodes that just left the layout hear it too, so they stop serving under the old one.
      const targets = new Map<string, LayoutNode>();
      for (const n of [...(previous?.nodes ?? []), ...next.nodes]) if (n.id !== state.nodeId) targets.set(n.id, n);
      for (const n of targets.values()) this.push(peerOf(n));
    });
  }

  /** The routes the RPC server must serve for layout exchange. */
  routes(): RpcRoute[] {
    return [
      { method: 'GET', path: LAYOUT_PATH, handler: () => ({ layout: this.state.current ?? null, history: this.history() }) },
      {
        method: 'PUT', path: LAYOUT_PATH, handler: (req) => {
          const body = req.body as { layout?: Layout; history?: LayoutHistory } | undefined;
          const layout = body?.layout;
          if (layout === undefined) throw new RpcError(400, 'BadRequest', 'body must be { layout }');
          try {
            const r = this.state.apply(layout);
            if (r.version === layout.version && body?.history) this.state.mergeHistory(body.history);
            return r;
          } catch (e) {
            if (e instanceof LayoutRejectedError) throw new RpcError(400, 'LayoutRejected', e.message);
            throw e;
          }
        },
      },
    ];
  }

  /** What travels with a layout: the older versions still in use (a node that joins late needs them). */
  history(): LayoutHistory {
    return this.state.historyRecord;
  }

  /** Asks a peer for its layout and transition history and takes what is newer (used by the rebalancer). */
  async pullFrom(peer: RpcPeer): Promise<void> {
    const r = await this.rpc.call<{ layout: Layout | null; history?: LayoutHistory }>(peer, 'GET', LAYOUT_PATH, undefined, { timeoutMs: 5_000 });
    if (!r.layout) return;
    const applied = this.state.apply(r.layout);
    if (applied.version === r.layout.version && r.history) this.state.mergeHistory(r.history);
  }

  /** Called by the RPC client with the layout version a peer reported on a response. */
  onPeerVersion(peerId: string, version: number): void {
    if (this.stopped) return;
    const mine = this.state.version;
    if (version === mine) return;
    const peer = this.state.node(peerId);
    if (peer === undefined) return; // not (or no longer) in our layout: it will learn from a push, or was removed
    if (version > mine) this.pull(peerOf(peer));
    else this.push(peerOf(peer));
  }

  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => this.tick(), this.gossipIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One ping to a random live peer: its answer carries its version, which onPeerVersion acts on. */
  private tick(): void {
    const layout = this.state.current;
    if (layout === undefined) return;
    const peers = layout.nodes.filter((n) => n.id !== this.state.nodeId && this.rpc.health.isUp(n.id));
    if (peers.length === 0) return;
    const n = peers[Math.floor(Math.random() * peers.length)];
    void this.rpc.ping(peerOf(n), 2_000).catch(() => undefined);
  }

  private push(peer: RpcPeer): void {
    const layout = this.state.current;
    if (layout === undefined || this.busy.has(peer.id) || this.stopped) return;
    this.busy.add(peer.id);
    this.rpc.call<{ version: number; applied: boolean }>(peer, 'PUT', LAYOUT_PATH, { layout, history: this.history() }, { timeoutMs: 5_000 })
      .then((r) => {
        if (r.applied) this.log.info('layout pushed', { peer: peer.id, version: layout.version });
      })
      .catch((e: Error) => {
        if (!isPeerFailure(e)) this.log.warn('layout push failed', { peer: peer.id, version: layout.version, error: e.message });
      })
      .finally(() => this.busy.delete(peer.id));
  }

  private pull(peer: RpcPeer): void {
    if (this.busy.has(peer.id) || this.stopped) return;
    this.busy.add(peer.id);
    this.pullFrom(peer)
      .catch((e: Error) => {
        if (!isPeerFailure(e)) this.log.warn('layout pull failed', { peer: peer.id, error: e.message });
      })
      .finally(() => this.busy.delete(peer.id));
  }
}
