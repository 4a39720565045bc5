/**
 * Layout transitions as the local runtime shows and waits for them: each node's `rebalance` (GET
 * /v1/status; RebalanceStatus in storage-node/src/admin/api-types.ts) summed per site into one
 * progress line, and the rules for "this node is done". Pure, so the text is tested without nodes.
 */
import type { RebalanceStatus } from '../../storage-node/src/admin/api-types';
import { formatBytes, formatDuration, progressBar } from './format';

export interface NodeRebalance {
  id: string;
  /** Draining in the layout the runtime last applied. */
  draining: boolean;
  /** Absent when the node does not report it (a node from before transitions) or did not answer. */
  rebalance?: RebalanceStatus;
}

/** The REBALANCE cell of `status`: the phase, `drained` once a draining node is, `-` when not reported. */
export function rebalanceCell(r: RebalanceStatus | undefined): string {
  if (!r) return '-';
  return r.drained ? 'drained' : r.phase;
}

/** The node takes part in a transition: something to do or wait for, an old version still open, or a drain not over. */
export function inTransition(n: NodeRebalance): boolean {
  const r = n.rebalance;
  if (!r) return false;
  return r.phase !== 'idle' || r.openVersions.length > 0 || (n.draining && !r.drained);
}

/**
 * The node is done with the transition to layout `version`: it serves under it (a status from before
 * the layout arrived does not count), with no older version open and nothing left to do. A node that
 * does not report `rebalance` has no transitions to wait for: done.
 */
export function transitionDone(r: RebalanceStatus | undefined, version: number): boolean {
  if (!r) return true;
  return r.layoutVersion >= version && r.phase === 'idle' && r.openVersions.length === 0;
}

/** A draining node may leave the layout and be stopped: it says so, under `version` or later. */
export function drainDone(r: RebalanceStatus | undefined, version: number): boolean {
  return r !== undefined && r.drained && r.layoutVersion >= version;
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * One line for a site while any of its nodes is in a transition (else undefined):
 * `dc1 [#########-----------] 45% 120 MiB of 266 MiB, 12 partitions left, 30 MiB/s, ETA 5 s (dc1-pool-2 copying)`.
 * The bar counts bytes when every node with partitions left knows their size, else partitions.
 */
export function siteProgressLine(site: string, nodes: NodeRebalance[], width = 20): string | undefined {
  if (!nodes.some(inTransition)) return undefined;
  const rs = nodes.flatMap((n) => (n.rebalance ? [n.rebalance] : []));
  const sum = (f: (r: RebalanceStatus) => number): number => rs.reduce((a, r) => a + Math.max(0, f(r)), 0);
  const partitionsToMove = sum((r) => r.partitionsToMove);
  const partitionsMoved = sum((r) => Math.min(r.partitionsMoved, r.partitionsToMove));
  const left = partitionsToMove - partitionsMoved;
  const copying = rs.filter((r) => r.partitionsMoved < r.partitionsToMove);
  const bytesToMove = sum((r) => r.bytesToMove);
  // A node with all its partitions in is done with their bytes, even those it found already there
  // and so did not count as moved (a node taking back what it held before).
  const bytesMoved = sum((r) => (r.partitionsMoved >= r.partitionsToMove ? r.bytesToMove : Math.min(r.bytesMoved, r.bytesToMove)));
  const bytesKnown = bytesToMove > 0 && copying.every((r) => r.bytesToMove > 0);
  let fraction: number;
  if (bytesKnown) fraction = bytesMoved / bytesToMove;
  else if (partitionsToMove > 0) fraction = partitionsMoved / partitionsToMove;
  else fraction = rs.some((r) => r.phase === 'waiting' || r.phase === 'copying') ? 0 : 1; // nothing counted: done once past copying
  if (left > 0) fraction = Math.min(fraction, 0.99); // a full bar means every partition is in
  const facts: string[] = [];
  if (bytesKnown) facts.push(`${formatBytes(bytesMoved)} of ${formatBytes(bytesToMove)}`, ...(left > 0 ? [`${plural(left, 'partition')} left`] : []));
  else if (partitionsToMove > 0) facts.push(`${partitionsMoved} of ${plural(partitionsToMove, 'partition')}`);
  if (left > 0) {
    const etas = copying.map((r) => r.etaSeconds);
    // The site is done when its slowest node is; one node that cannot tell makes the site's ETA unknown.
    const eta = etas.some((e) => e === null) ? null : Math.max(...(etas as number[]));
    facts.push(`${formatBytes(sum((r) => r.bytesPerSecond))}/s`, `ETA ${formatDuration(eta)}`);
  }
  const who = nodes.flatMap((n) => {
    const r = n.rebalance;
    if (!r) return [];
    if (n.draining) return [r.drained ? `${n.id} drained` : `${n.id} draining, ${plural(r.heldBlobs, 'copy', 'copies')} held`];
    if (r.phase !== 'idle') return [`${n.id} ${r.phase}`];
    return r.openVersions.length > 0 ? [`${n.id} idle, version${r.openVersions.length === 1 ? '' : 's'} ${r.openVersions.join(', ')} still open`] : [];
  });
  const pct = `${Math.floor(fraction * 100)}%`;
  return [`${site} ${progressBar(fraction, width)} ${pct}`, facts.join(', '), who.length > 0 ? `(${who.join('; ')})` : '']
    .filter((s) => s !== '').join(' ');
}
