/**
 * Placement: which nodes hold an object's data and a bucket's metadata, for a given layout.
 * Pure functions of (layout, name); no I/O. See docs/decisions/0008 and 0009.
 */
import { createHash } from 'node:crypto';
import type { Layout, LayoutNode, ReplicationPolicy, SiteInfo } from './types';

/** Partition of a name: the first two bytes of its sha256, big-endian, modulo the partition count. */
export function partitionOf(name: string, partitionCount: number): number {
  if (!Number.isInteger(partitionCount) || partitionCount < 1 || partitionCount > 65536) {
    throw new RangeError(`partitionCount must be an integer in 1..65536, got ${partitionCount}`);
  }
  const h = createHash('sha256').update(name, 'utf8').digest();
  return h.readUInt16BE(0) % partitionCount;
}

const TWO_POW_53 = 2 ** 53;

/** A uniform number in the open interval (0,1) from sha256(partition, node id): 53 bits, offset by half a step. */
function unitHash(partition: number, nodeId: string): number {
  const h = createHash('sha256').update(`${partition}\u0000${nodeId}`, 'utf8').digest();
  const bits = h.readUInt32BE(0) * 2 ** 21 + (h.readUInt32BE(4) >>> 11); // 32 + 21 = 53 bits
  return (bits + 0.5) / TWO_POW_53;
}

/**
 * Weighted rendezvous score: −capacity / ln(u). For one partition, the probability that a node
 * scores highest is its capacity over the site's total, and adding a node only ever inserts it
 * into existing rankings (the others keep their relative order).
 */
export function rendezvousScore(partition: number, node: LayoutNode): number {
  return -node.capacityBytes / Math.log(unitHash(partition, node.id));
}

/**
 * All nodes of `site` (whatever their state), best first for `partition`. Callers filter by state:
 * filtering a rendezvous ranking gives the ranking of the remaining nodes.
 * Ties (practically impossible) are broken by id so the order never depends on the layout's order.
 */
export function rankNodes(layout: Layout, site: string, partition: number): LayoutNode[] {
  const scored = layout.nodes
    .filter((n) => n.site === site)
    .map((n) => ({ n, s: rendezvousScore(partition, n) }));
  scored.sort((a, b) => (b.s - a.s) || (a.n.id < b.n.id ? -1 : a.n.id > b.n.id ? 1 : 0));
  return scored.map((x) => x.n);
}

const globCache = new Map<string, RegExp>();
const GLOB_CACHE_LIMIT = 1024;

/** `*` matches any run of characters (also none), `?` exactly one; everything else literally. */
export function globMatch(glob: string, name: string): boolean {
  let re = globCache.get(glob);
  if (!re) {
    const body = glob.split('').map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&'))).join('');
    re = new RegExp(`^${body}$`, 's');
    if (globCache.size >= GLOB_CACHE_LIMIT) globCache.clear();
    globCache.set(glob, re);
  }
  return re.test(name);
}

function policyMatches(p: ReplicationPolicy, bucket: string, key: string | undefined): boolean {
  if (!p.match.buckets.some((g) => globMatch(g, bucket))) return false;
  const prefixes = p.match.prefixes ?? [];
  if (prefixes.length === 0) return true;
  if (key === undefined) return false; // a prefix rule cannot claim a whole bucket
  return prefixes.some((x) => key.startsWith(x));
}

/**
 * The policy of an object: the bucket's own policy when it was created with one (`boundPolicy`,
 * kept by the bucket record), else the first policy (in layout order) whose bucket globs and
 * prefixes match, else the default. Without a key, the policy of the bucket as a whole (prefix
 * rules do not apply). A bound policy missing from the layout falls back to matching, so data is
 * still placed while the layout catches up.
 */
export function policyFor(layout: Layout, bucket: string, key?: string, boundPolicy?: string): ReplicationPolicy {
  const bound = boundPolicy === undefined ? undefined : layout.policies.find((p) => p.name === boundPolicy);
  if (bound) return bound;
  const found = layout.policies.find((p) => policyMatches(p, bucket, key));
  if (found) return found;
  const def = layout.policies.find((p) => p.name === layout.defaultPolicy);
  if (!def) throw new Error(`layout ${layout.version}: default policy ${layout.defaultPolicy} is missing`);
  return def;
}

export interface SiteCopies {
  site: string;
  /** How many copies the rule asks for; `nodes` is shorter when the site lacks active nodes. */
  wanted: number;
  nodes: LayoutNode[];
}

export interface DataPlacement {
  policy: ReplicationPolicy;
  partition: number;
  copies: SiteCopies[];
}

function siteOf(layout: Layout, name: string): SiteInfo | undefined {
  return layout.sites.find((s) => s.name === name);
}

/** The partition of an object's data: the bucket and key together, so one bucket spreads over all nodes. */
export function dataPartition(layout: Layout, bucket: string, key: string): number {
  return partitionOf(`${bucket}/${key}`, layout.partitionCount);
}

/**
 * Where new copies of an object go: for each rule of its policy, the top `copies` active nodes of
 * the rule's site. Draining and failed nodes get nothing new; rules on failed sites are left out.
 * No node appears twice, even if two rules name the same site.
 */
export function dataPlacement(layout: Layout, bucket: string, key: string, boundPolicy?: string): DataPlacement {
  const policy = policyFor(layout, bucket, key, boundPolicy);
  const partition = dataPartition(layout, bucket, key);
  return { policy, partition, copies: placeCopies(layout, policy, partition) };
}

/**
 * The copies of a partition under a policy (what dataPlacement gives an object of that partition):
 * for each rule on an active site, its top `copies` active nodes, no node twice.
 */
export function placeCopies(layout: Layout, policy: ReplicationPolicy, partition: number): SiteCopies[] {
  const used = new Set<string>();
  const copies: SiteCopies[] = [];
  for (const rule of policy.rules) {
    if (siteOf(layout, rule.site)?.state !== 'active') continue;
    const nodes = rankNodes(layout, rule.site, partition)
      .filter((n) => n.state === 'active' && !used.has(n.id))
      .slice(0, rule.copies);
    for (const n of nodes) used.add(n.id);
    copies.push({ site: rule.site, wanted: rule.copies, nodes });
  }
  return copies;
}

/** The metadata replicas of a bucket: the top active node of every non-failed site for partitionOf(bucket). */
export function metaPlacement(layout: Layout, bucket: string): LayoutNode[] {
  const partition = partitionOf(bucket, layout.partitionCount);
  const out: LayoutNode[] = [];
  for (const site of layout.sites) {
    if (site.state !== 'active') continue;
    const top = rankNodes(layout, site.name, partition).find((n) => n.state === 'active');
    if (top) out.push(top);
  }
  return out;
}

/**
 * Nodes that may hold an object's data, in the order a gateway in `ownSite` should try them:
 * its own site first, then the other primary sites, then fallback sites; within a site, the write
 * placement first, then draining nodes that held the copy before the drain moved it. With
 * `opts.previous` (during a transition), the old layouts' holders are added, ahead of the current
 * ones within each site (they hold every copy until the move is over). Failed nodes and
 * failed sites are left out; no node appears twice.
 */
export function readCandidates(
  layout: Layout, bucket: string, key: string, ownSite: string, opts: { previous?: Layout | readonly Layout[]; boundPolicy?: string } = {},
): LayoutNode[] {
  const { boundPolicy } = opts;
  const previous = opts.previous === undefined ? [] : Array.isArray(opts.previous) ? opts.previous as readonly Layout[] : [opts.previous as Layout];
  const seen = new Set<string>();
  const perSite = new Map<string, LayoutNode[]>();
  const add = (n: LayoutNode): void => {
    if (seen.has(n.id)) return;
    seen.add(n.id);
    const list = perSite.get(n.site) ?? [];
    list.push(n);
    perSite.set(n.site, list);
  };
  // During a transition the older layouts' holders come first: they hold every copy until the move is
  // over, while a new owner may still be copying in.
  for (const l of [...previous, layout]) {
    for (const n of holders(l, bucket, key, boundPolicy)) {
      // A node that the current layout marks failed, or whose site failed, is not worth a try.
      const now = layout.nodes.find((x) => x.id === n.id);
      if (now?.state === 'failed' || siteOf(layout, n.site)?.state === 'failed') continue;
      add(now ?? n);
    }
  }
  const rank = (s: string): number => (s === ownSite ? 0 : siteOf(layout, s)?.role === 'fallback' ? 2 : 1);
  const order = [...perSite.keys()].sort((a, b) => rank(a) - rank(b) || siteIndex(layout, a) - siteIndex(layout, b));
  return order.flatMap((s) => perSite.get(s) ?? []);
}

function siteIndex(layout: Layout, site: string): number {
  const i = layout.sites.findIndex((s) => s.name === site);
  return i < 0 ? layout.sites.length : i;
}

/** Write placement of one layout, then the nodes that would hold the copy if draining nodes still counted. */
function holders(layout: Layout, bucket: string, key: string, boundPolicy: string | undefined): LayoutNode[] {
  const placed = dataPlacement(layout, bucket, key, boundPolicy);
  const out = placed.copies.flatMap((c) => c.nodes);
  for (const rule of placed.policy.rules) {
    if (siteOf(layout, rule.site)?.state !== 'active') continue;
    const before = rankNodes(layout, rule.site, placed.partition).filter((n) => n.state !== 'failed').slice(0, rule.copies);
    for (const n of before) if (!out.includes(n)) out.push(n);
  }
  return out;
}

/**
 * How deep each site's ranking is used for a partition: the most copies any policy asks of it
 * (at least 1, because every non-failed site holds metadata on its top node).
 */
export function siteDepths(layout: Layout): Map<string, number> {
  const depth = new Map<string, number>();
  for (const s of layout.sites) depth.set(s.name, 1);
  for (const p of layout.policies) {
    for (const r of p.rules) if (depth.has(r.site)) depth.set(r.site, Math.max(depth.get(r.site) ?? 1, r.copies));
  }
  return depth;
}

export interface PartitionMove {
  partition: number;
  site: string;
  /** Active owners in the old layout, best first. */
  from: string[];
  /** Active owners in the new layout, best first. */
  to: string[];
}

/**
 * Partitions whose owners change between two layouts, per site. A site's owners of a partition are
 * its top `depth` active nodes (see `siteDepths` of the new layout). Sites failed in either layout
 * are left out: losing or regaining a site is repair, not a move. Both layouts must have the same
 * partition count.
 */
export function movedPartitions(oldLayout: Layout, newLayout: Layout): PartitionMove[] {
  if (oldLayout.partitionCount !== newLayout.partitionCount) {
    throw new Error(`partition count changed (${oldLayout.partitionCount} → ${newLayout.partitionCount}); not supported`);
  }
  const depths = siteDepths(newLayout);
  const oldDepths = siteDepths(oldLayout);
  const moves: PartitionMove[] = [];
  for (const site of newLayout.sites) {
    if (site.state !== 'active' || siteOf(oldLayout, site.name)?.state !== 'active') continue;
    const depth = Math.max(depths.get(site.name) ?? 1, oldDepths.get(site.name) ?? 1);
    for (let p = 0; p < newLayout.partitionCount; p++) {
      const from = topActive(oldLayout, site.name, p, depth);
      const to = topActive(newLayout, site.name, p, depth);
      if (!sameSet(from, to)) moves.push({ partition: p, site: site.name, from, to });
    }
  }
  return moves;
}

/** Ids of the top `depth` active nodes of a site for a partition. */
export function topActive(layout: Layout, site: string, partition: number, depth: number): string[] {
  return rankNodes(layout, site, partition).filter((n) => n.state === 'active').slice(0, depth).map((n) => n.id);
}

function sameSet(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}
