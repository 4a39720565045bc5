/**
 * The layout: which nodes and sites make up a grid, and which replication policies apply.
 * A layout is plain data (JSON-serialisable), versioned, and checked by `validateLayout` before use.
 * This file imports nothing, so the operator's planner can reuse `validateLayout` without pulling
 * in any of the storage node (see docs/decisions/0009-placement.md).
 */

export type NodeState = 'active' | 'draining' | 'failed';
export type SiteRole = 'primary' | 'fallback';
export type SiteState = 'active' | 'failed';
export type IngestMode = 'strict' | 'balanced' | 'dualCommit';

export interface SiteInfo {
  name: string;
  role: SiteRole;
  state: SiteState;
}

export interface LayoutNode {
  /** Stable id: the StatefulSet pod name, `<pool>-<ordinal>`. */
  id: string;
  site: string;
  pool: string;
  /** Peer RPC endpoint, plain `host:port` so a site can live in another cluster later. */
  rpcAddress: string;
  /** S3 endpoint, `host:port`. */
  s3Address: string;
  /** Placement weight: a node with twice the capacity gets twice the partitions. */
  capacityBytes: number;
  state: NodeState;
}

export interface PolicyMatch {
  /** Bucket names or globs (`*` any run of characters, `?` one character), e.g. `med-*`. */
  buckets: string[];
  /** Key prefixes; absent or empty means every key of the matched buckets. */
  prefixes?: string[];
}

export interface PolicyRule {
  site: string;
  copies: number;
}

export interface ReplicationPolicy {
  name: string;
  match: PolicyMatch;
  rules: PolicyRule[];
  ingest: IngestMode;
}

export interface Layout {
  /** Only goes up; a node keeps the highest version it has seen. */
  version: number;
  /** Fixed for the life of a grid: changing it would move every object. */
  partitionCount: number;
  sites: SiteInfo[];
  nodes: LayoutNode[];
  /** Evaluated in order: the first policy whose match fits a bucket and key applies. */
  policies: ReplicationPolicy[];
  /** Name of the policy used where no other matches (it is one of `policies`). */
  defaultPolicy: string;
}

/**
 * 4096, not the 256 of decision 0008: with rendezvous hashing a node's share of partitions is
 * binomial, and 256 partitions leave 4 equal nodes up to ~28% off their fair share; 4096 keep up to
 * 8 nodes per site within ~12% (measured in placement.test.ts; see docs/decisions/0009-placement.md).
 */
export const DEFAULT_PARTITION_COUNT = 4096;

/** Limits that keep a layout small enough to gossip on every RPC and to plan in microseconds. */
export const LAYOUT_LIMITS = {
  maxPartitionCount: 65536,
  maxSites: 32,
  maxNodes: 4096,
  maxPolicies: 256,
  maxRulesPerPolicy: 32,
  maxGlobsPerPolicy: 64,
  maxPrefixesPerPolicy: 64,
  maxNameLength: 253,
  maxCopiesPerRule: 16,
} as const;

const NODE_STATES: readonly string[] = ['active', 'draining', 'failed'];
const SITE_ROLES: readonly string[] = ['primary', 'fallback'];
const SITE_STATES: readonly string[] = ['active', 'failed'];
const INGEST_MODES: readonly string[] = ['strict', 'balanced', 'dualCommit'];

/** Host (name, IPv4 or [IPv6]) and a port 1..65535. */
export function isHostPort(s: unknown): boolean {
  if (typeof s !== 'string' || s.length === 0 || s.length > 300) return false;
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})$/.exec(s);
  if (!m) return false;
  const port = Number(m[2]);
  return port >= 1 && port <= 65535;
}

/** Bucket globs may only use bucket-name characters plus `*` and `?`. */
export function isBucketGlob(s: unknown): boolean {
  return typeof s === 'string' && s.length > 0 && s.length <= 63 && /^[a-z0-9.*?-]+$/.test(s);
}

function isName(s: unknown): s is string {
  return typeof s === 'string' && s.length > 0 && s.length <= LAYOUT_LIMITS.maxNameLength;
}

function isIntIn(n: unknown, min: number, max: number): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= min && n <= max;
}

/**
 * Everything wrong with a layout, as readable sentences; empty when it can be used.
 * Capacity problems (a rule asking for more copies than its site has active nodes) are reported
 * too: such a layout still places what it can, but the policy is degraded.
 */
export function validateLayout(l: Layout): string[] {
  const { errors, warnings } = checkLayout(l);
  return [...errors, ...warnings];
}

/**
 * The same checks as validateLayout, split: `errors` make a layout unusable (a node refuses it);
 * `warnings` are capacity shortfalls (a rule asking for more copies than its site has active nodes),
 * with which the layout still places what it can and the policy reports itself degraded.
 */
export function checkLayout(l: Layout): { errors: string[]; warnings: string[] } {
  const warnings: string[] = [];
  const errors = structuralProblems(l, warnings);
  return { errors, warnings };
}

function structuralProblems(l: Layout, warnings: string[]): string[] {
  const problems: string[] = [];
  if (l === null || typeof l !== 'object') return ['layout must be an object'];
  if (!isIntIn(l.version, 0, Number.MAX_SAFE_INTEGER)) problems.push('version must be an integer ≥ 0');
  if (!isIntIn(l.partitionCount, 1, LAYOUT_LIMITS.maxPartitionCount)) {
    problems.push(`partitionCount must be an integer in 1..${LAYOUT_LIMITS.maxPartitionCount}`);
  }
  if (!Array.isArray(l.sites) || !Array.isArray(l.nodes) || !Array.isArray(l.policies)) {
    problems.push('sites, nodes and policies must be arrays');
    return problems;
  }
  const sites = validateSites(l.sites, problems);
  const activeBySite = validateNodes(l.nodes, sites, problems);
  validatePolicies(l, sites, activeBySite, problems, warnings);
  const usable = l.sites.some((s) => s?.state === 'active' && (activeBySite.get(s.name) ?? 0) > 0);
  if (!usable) problems.push('no site has an active node');
  return problems;
}

function validateSites(sites: SiteInfo[], problems: string[]): Map<string, SiteInfo> {
  const byName = new Map<string, SiteInfo>();
  if (sites.length > LAYOUT_LIMITS.maxSites) problems.push(`at most ${LAYOUT_LIMITS.maxSites} sites`);
  sites.forEach((s, i) => {
    if (!s || !isName(s.name)) return void problems.push(`sites[${i}]: name must be a non-empty string`);
    if (byName.has(s.name)) problems.push(`site ${s.name}: duplicate name`);
    if (!SITE_ROLES.includes(s.role)) problems.push(`site ${s.name}: role must be primary or fallback`);
    if (!SITE_STATES.includes(s.state)) problems.push(`site ${s.name}: state must be active or failed`);
    byName.set(s.name, s);
  });
  return byName;
}

/** Returns the number of active nodes per site (nodes of failed sites do not count). */
function validateNodes(nodes: LayoutNode[], sites: Map<string, SiteInfo>, problems: string[]): Map<string, number> {
  const ids = new Set<string>();
  const rpc = new Map<string, string>();
  const active = new Map<string, number>();
  if (nodes.length > LAYOUT_LIMITS.maxNodes) problems.push(`at most ${LAYOUT_LIMITS.maxNodes} nodes`);
  nodes.forEach((n, i) => {
    if (!n || !isName(n.id)) return void problems.push(`nodes[${i}]: id must be a non-empty string`);
    const where = `node ${n.id}`;
    if (ids.has(n.id)) problems.push(`${where}: duplicate id`);
    ids.add(n.id);
    const site = sites.get(n.site);
    if (!site) problems.push(`${where}: unknown site ${JSON.stringify(n.site)}`);
    if (!isName(n.pool)) problems.push(`${where}: pool must be a non-empty string`);
    if (!isHostPort(n.rpcAddress)) problems.push(`${where}: rpcAddress must be host:port`);
    else if (rpc.has(n.rpcAddress)) problems.push(`${where}: rpcAddress ${n.rpcAddress} is also used by ${rpc.get(n.rpcAddress)}`);
    else rpc.set(n.rpcAddress, n.id);
    if (!isHostPort(n.s3Address)) problems.push(`${where}: s3Address must be host:port`);
    if (!isIntIn(n.capacityBytes, 1, Number.MAX_SAFE_INTEGER)) problems.push(`${where}: capacityBytes must be a positive integer`);
    if (!NODE_STATES.includes(n.state)) problems.push(`${where}: state must be active, draining or failed`);
    if (n.state === 'active' && site?.state === 'active') active.set(n.site, (active.get(n.site) ?? 0) + 1);
  });
  return active;
}

function validatePolicies(l: Layout, sites: Map<string, SiteInfo>, active: Map<string, number>, problems: string[], warnings: string[]): void {
  const names = new Set<string>();
  if (l.policies.length > LAYOUT_LIMITS.maxPolicies) problems.push(`at most ${LAYOUT_LIMITS.maxPolicies} policies`);
  l.policies.forEach((p, i) => {
    if (!p || !isName(p.name)) return void problems.push(`policies[${i}]: name must be a non-empty string`);
    const where = `policy ${p.name}`;
    if (names.has(p.name)) problems.push(`${where}: duplicate name`);
    names.add(p.name);
    if (!INGEST_MODES.includes(p.ingest)) problems.push(`${where}: ingest must be strict, balanced or dualCommit`);
    validateMatch(p, where, problems);
    if (!Array.isArray(p.rules) || p.rules.length === 0) return void problems.push(`${where}: needs at least one rule`);
    if (p.rules.length > LAYOUT_LIMITS.maxRulesPerPolicy) problems.push(`${where}: at most ${LAYOUT_LIMITS.maxRulesPerPolicy} rules`);
    const ruleSites = new Set<string>();
    let total = 0;
    for (const r of p.rules) {
      if (!r || !isIntIn(r.copies, 1, LAYOUT_LIMITS.maxCopiesPerRule)) {
        problems.push(`${where}: copies must be an integer in 1..${LAYOUT_LIMITS.maxCopiesPerRule} (site ${r?.site})`);
        continue;
      }
      total += r.copies;
      const site = sites.get(r.site);
      if (!site) { problems.push(`${where}: unknown site ${JSON.stringify(r.site)}`); continue; }
      if (ruleSites.has(r.site)) problems.push(`${where}: site ${r.site} appears in two rules`);
      ruleSites.add(r.site);
      if (site.state === 'failed') continue; // reported by the planner; placement skips failed sites
      const n = active.get(r.site) ?? 0;
      if (r.copies > n) warnings.push(`${where}: asks for ${r.copies} copies in site ${r.site}, which has ${n} active node(s)`);
    }
    if (p.ingest === 'dualCommit' && total < 2) problems.push(`${where}: dualCommit needs at least 2 copies in all`);
  });
  if (!names.has(l.defaultPolicy)) problems.push(`defaultPolicy ${JSON.stringify(l.defaultPolicy)} is not one of the policies`);
}

function validateMatch(p: ReplicationPolicy, where: string, problems: string[]): void {
  const m = p.match;
  if (!m || !Array.isArray(m.buckets)) return void problems.push(`${where}: match.buckets must be a list`);
  if (m.buckets.length > LAYOUT_LIMITS.maxGlobsPerPolicy) problems.push(`${where}: at most ${LAYOUT_LIMITS.maxGlobsPerPolicy} bucket globs`);
  for (const g of m.buckets) if (!isBucketGlob(g)) problems.push(`${where}: bad bucket glob ${JSON.stringify(g)}`);
  if (m.prefixes === undefined) return;
  if (!Array.isArray(m.prefixes)) return void problems.push(`${where}: match.prefixes must be a list`);
  if (m.prefixes.length > LAYOUT_LIMITS.maxPrefixesPerPolicy) problems.push(`${where}: at most ${LAYOUT_LIMITS.maxPrefixesPerPolicy} prefixes`);
  for (const x of m.prefixes) {
    if (typeof x !== 'string' || x.length === 0 || x.length > 1024) problems.push(`${where}: bad prefix ${JSON.stringify(x)}`);
  }
}
