/**
 * The layout planner: custom resources + observed nodes (+ the previous layout) → the next layout.
 * Pure and deterministic; the same code runs in the operator (pods as nodes) and in the local
 * runtime (processes as nodes). See docs/decisions/0009-placement.md.
 */
import type { Grid, NodePool, ReplicationPolicyResource, Site } from '../api/types';
import type { Layout, LayoutNode, ReplicationPolicy, SiteInfo } from '../../../storage-node/src/admin/api-types';
// The one value import from the storage node: validation must be the same code on both sides
// (decision 0009). layout/types.ts imports nothing, so this pulls in no storage-node code.
import { validateLayout } from '../../../storage-node/src/layout/types';
import { quantityToBytes } from './fields';

export interface ObservedNode {
  /** Pod (or local process) name, `<pool>-<ordinal>`. */
  id: string;
  pool: string;
  /** `host:port`; may be empty for a pod that has no IP yet. */
  rpcAddress: string;
  s3Address: string;
  /** 0 when unknown: the pool's storage size is used instead. */
  capacityBytes: number;
  ready: boolean;
}

export interface PlanInput {
  grid: Grid;
  sites: Site[];
  pools: NodePool[];
  policies: ReplicationPolicyResource[];
  nodes: ObservedNode[];
  previous?: Layout;
  /** Draining nodes the storage nodes report as owning nothing: they leave the layout. */
  drainedNodeIds?: string[];
}

export interface PlanResult {
  layout: Layout;
  /** False when the layout equals `previous` (same version then). */
  changed: boolean;
  /** Readable; the layout is produced even when there are problems. */
  problems: string[];
  /**
   * Scale-ins refused because they would leave a policy unsatisfiable, one message per pool; the
   * nodes concerned stay active in `layout`, so applying it anyway takes nothing away.
   */
  refused: string[];
}

const ID = /^(.+)-(0|[1-9][0-9]{0,5})$/;

export function planLayout(input: PlanInput): PlanResult {
  const problems: string[] = [];
  const { grid, previous } = input;
  let partitionCount = grid.spec.partitionCount;
  if (previous && previous.partitionCount !== partitionCount) {
    problems.push(`Grid ${grid.metadata.name}: spec.partitionCount cannot change (layout has ${previous.partitionCount}, spec asks ${partitionCount}); keeping ${previous.partitionCount}`);
    partitionCount = previous.partitionCount;
  }
  const sites = new Map<string, SiteInfo>();
  for (const s of input.sites) {
    sites.set(s.metadata.name, { name: s.metadata.name, role: s.spec.role, state: s.spec.state === 'Failed' ? 'failed' : 'active' });
  }
  const nodes = planNodes(input, sites, problems);
  // A deleted Site keeps its entry while its nodes drain, so the layout stays valid.
  for (const n of nodes) {
    if (!sites.has(n.site)) sites.set(n.site, previous?.sites.find((s) => s.name === n.site) ?? { name: n.site, role: 'fallback', state: 'active' });
  }
  const siteList = [...sites.values()].sort((a, b) => cmp(a.name, b.name));
  const policies = planPolicies(input, siteList, problems);
  const refused = refuseUnsafeScaleIn(input, nodes, sites, policies, problems);
  const next: Layout = {
    version: 1,
    partitionCount,
    sites: siteList,
    nodes: nodes.sort((a, b) => cmp(a.id, b.id)),
    policies,
    defaultPolicy: grid.spec.defaultPolicy,
  };
  for (const p of validateLayout(next)) problems.push(`layout: ${p}`);
  const changed = !previous || canonical(previous) !== canonical(next);
  next.version = previous ? previous.version + (changed ? 1 : 0) : 1;
  return { layout: next, changed, problems, refused };
}

function planNodes(input: PlanInput, sites: Map<string, SiteInfo>, problems: string[]): LayoutNode[] {
  const pools = new Map<string, NodePool>(input.pools.map((p) => [p.metadata.name, p]));
  const prev = new Map<string, LayoutNode>((input.previous?.nodes ?? []).map((n) => [n.id, n]));
  const drained = new Set(input.drainedNodeIds ?? []);
  const observed = new Map<string, ObservedNode>();
  for (const o of input.nodes) {
    if (observed.has(o.id)) { problems.push(`node ${o.id}: observed twice; the first one is used`); continue; }
    observed.set(o.id, o);
  }
  const out: LayoutNode[] = [];
  for (const id of new Set([...observed.keys(), ...prev.keys()])) {
    const o = observed.get(id);
    const old = prev.get(id);
    const poolName = o?.pool ?? old?.pool ?? '';
    const m = ID.exec(id);
    if (!m || m[1] !== poolName) {
      problems.push(`node ${id}: id must be <pool>-<ordinal> for pool ${poolName}; ignored`);
      if (old) out.push({ ...old, state: 'draining' }); // it is in the layout already: move its data away
      continue;
    }
    const pool = pools.get(poolName);
    const site = pool ? sites.get(pool.spec.site) : undefined;
    const siteName = pool?.spec.site ?? old?.site ?? '';
    if (sites.get(siteName)?.state === 'failed') continue; // a Failed site's nodes leave the layout
    const wanted = pool !== undefined && site !== undefined && Number(m[2]) < pool.spec.replicas;
    if (!wanted) {
      if (!pool && o && !old) problems.push(`node ${id}: pool ${poolName} is not a NodePool of grid ${input.grid.metadata.name}; ignored`);
      // Scale-in or a removed pool: drain what the layout knows, forget what it never had.
      if (old && !drained.has(id)) out.push({ ...old, state: 'draining' });
      continue;
    }
    if (!old && !o?.ready) continue; // joins once Ready, so no partition is given to a node that cannot take it
    const n = toNode(id, pool, o, old, problems);
    if (n) out.push(n);
  }
  return out;
}

/**
 * A scale-in (a node `previous` had active is now draining or gone) that leaves a policy rule with
 * more copies than its site has active nodes, when `previous` had enough, would lose the copies
 * that rule keeps there: it is refused per site, and the site's nodes that were active stay active
 * (mutating `nodes`). A rule `previous` could not meet either is a capacity warning, not a refusal:
 * refusing it would block every change of a grid that is already degraded.
 */
function refuseUnsafeScaleIn(input: PlanInput, nodes: LayoutNode[], sites: Map<string, SiteInfo>, policies: ReplicationPolicy[], problems: string[]): string[] {
  const { previous } = input;
  if (!previous) return [];
  const prevSiteActive = new Set(previous.sites.filter((s) => s.state === 'active').map((s) => s.name));
  const countActive = (list: LayoutNode[], siteName: string): number =>
    list.filter((n) => n.site === siteName && n.state === 'active').length;
  const refused: string[] = [];
  const pools = new Map<string, NodePool>(input.pools.map((p) => [p.metadata.name, p]));
  const observed = new Map<string, ObservedNode>(input.nodes.map((o) => [o.id, o]));
  for (const site of [...sites.values()].sort((a, b) => cmp(a.name, b.name))) {
    if (site.state !== 'active' || !prevSiteActive.has(site.name)) continue; // a Failed site's copies are reported elsewhere
    const lost = previous.nodes.filter((p) => p.site === site.name && p.state === 'active' && !nodes.some((n) => n.id === p.id && n.state === 'active'));
    if (lost.length === 0) continue;
    const before = countActive(previous.nodes, site.name);
    const after = countActive(nodes, site.name);
    const short = policies.flatMap((p) => p.rules.filter((r) => r.site === site.name && r.copies > after && r.copies <= before).map((r) => ({ p, r })));
    if (short.length === 0) continue;
    const asks = short.map(({ p, r }) => `policy ${p.name} asks ${r.copies} cop${r.copies === 1 ? 'y' : 'ies'} there`).join('; ');
    for (const poolName of [...new Set(lost.map((n) => n.pool))].sort(cmp)) {
      const pool = pools.get(poolName);
      const what = pool ? `scaling to ${pool.spec.replicas}` : 'removing it';
      refused.push(`NodePool ${poolName}: ${what} leaves site ${site.name} with ${after} active node${after === 1 ? '' : 's'}; ${asks}`);
    }
    for (const old of lost) {
      // Keep the node as it is (addresses follow a Ready node as usual), so applying this layout takes nothing away.
      const pool = pools.get(old.pool);
      const kept = pool && pool.spec.site === old.site ? toNode(old.id, pool, observed.get(old.id), old, problems) : undefined;
      const i = nodes.findIndex((n) => n.id === old.id);
      const node = kept ?? { ...old, state: 'active' as const };
      if (i >= 0) nodes[i] = node;
      else nodes.push(node);
    }
  }
  return refused;
}

function toNode(id: string, pool: NodePool, o: ObservedNode | undefined, old: LayoutNode | undefined, problems: string[]): LayoutNode | undefined {
  const fromPool = quantityToBytes(pool.spec.storage.size) ?? 0;
  const observedCap = o && Number.isSafeInteger(o.capacityBytes) && o.capacityBytes > 0 ? o.capacityBytes : undefined;
  // Addresses follow the pod while it is Ready; an unready pod keeps its last known addresses.
  const rpcAddress = o?.ready && o.rpcAddress ? o.rpcAddress : old?.rpcAddress ?? o?.rpcAddress ?? '';
  const s3Address = o?.ready && o.s3Address ? o.s3Address : old?.s3Address ?? o?.s3Address ?? '';
  if (!rpcAddress || !s3Address) {
    problems.push(`node ${id}: no address yet; left out`);
    return undefined;
  }
  return {
    id,
    site: pool.spec.site,
    pool: pool.metadata.name,
    rpcAddress,
    s3Address,
    capacityBytes: observedCap ?? old?.capacityBytes ?? Math.max(1, fromPool),
    state: 'active',
  };
}

function planPolicies(input: PlanInput, sites: SiteInfo[], problems: string[]): ReplicationPolicy[] {
  const defName = input.grid.spec.defaultPolicy;
  // Higher priority first, then by name; the default policy is always last, so its usual
  // catch-all `*` never shadows a more specific policy.
  const sorted = [...input.policies].sort((a, b) => b.spec.priority - a.spec.priority || cmp(a.metadata.name, b.metadata.name));
  const out: ReplicationPolicy[] = sorted.filter((p) => p.metadata.name !== defName).map(toPolicy);
  const def = sorted.find((p) => p.metadata.name === defName);
  if (def) out.push(toPolicy(def));
  else {
    const live = sites.filter((s) => s.state === 'active');
    problems.push(`Grid ${input.grid.metadata.name}: default policy ${defName} not found; using one copy per site (${live.map((s) => s.name).join(', ') || 'none'}) with balanced ingest`);
    out.push({ name: defName, match: { buckets: [] }, rules: live.map((s) => ({ site: s.name, copies: 1 })), ingest: 'balanced' });
  }
  for (const p of out) {
    for (const r of p.rules) {
      if (sites.find((s) => s.name === r.site)?.state === 'failed') {
        problems.push(`ReplicationPolicy ${p.name}: site ${r.site} is Failed; its ${r.copies} cop${r.copies === 1 ? 'y is' : 'ies are'} not made`);
      }
    }
  }
  return out;
}

function toPolicy(p: ReplicationPolicyResource): ReplicationPolicy {
  const match: ReplicationPolicy['match'] = { buckets: [...p.spec.match.buckets] };
  if (p.spec.match.prefixes && p.spec.match.prefixes.length > 0) match.prefixes = [...p.spec.match.prefixes];
  return { name: p.metadata.name, match, rules: p.spec.rules.map((r) => ({ site: r.site, copies: r.copies })), ingest: p.spec.ingest };
}

/** Everything but the version, in a fixed order, so equal layouts compare equal whatever their order. */
function canonical(l: Layout): string {
  const node = (n: LayoutNode): unknown[] => [n.id, n.site, n.pool, n.rpcAddress, n.s3Address, n.capacityBytes, n.state];
  const pol = (p: ReplicationPolicy): unknown[] => [p.name, p.match.buckets, p.match.prefixes ?? [], p.rules.map((r) => [r.site, r.copies]), p.ingest];
  return JSON.stringify([
    l.partitionCount,
    [...l.sites].sort((a, b) => cmp(a.name, b.name)).map((s) => [s.name, s.role, s.state]),
    [...l.nodes].sort((a, b) => cmp(a.id, b.id)).map(node),
    l.policies.map(pol), // order matters: the first match wins
    l.defaultPolicy,
  ]);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
