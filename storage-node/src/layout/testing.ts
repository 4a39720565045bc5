/** Test helpers: a seeded random generator and builders of layouts. Used by tests only. */
import type { Layout, LayoutNode, ReplicationPolicy, SiteInfo } from './types';

/** mulberry32: a small seeded generator, so a failing property test can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function node(id: string, site: string, capacityBytes = 1e12, state: LayoutNode['state'] = 'active', port = 7000): LayoutNode {
  return { id, site, pool: `${site}-pool`, rpcAddress: `${id}.local:${port}`, s3Address: `${id}.local:9000`, capacityBytes, state };
}

export function site(name: string, role: SiteInfo['role'] = 'primary', state: SiteInfo['state'] = 'active'): SiteInfo {
  return { name, role, state };
}

export function onePerSite(name: string, sites: string[], buckets: string[] = ['*'], prefixes?: string[]): ReplicationPolicy {
  return { name, match: { buckets, prefixes }, rules: sites.map((s) => ({ site: s, copies: 1 })), ingest: 'balanced' };
}

/** A layout with `nodesPerSite[i]` nodes in site `s<i>`, ids `<seed>-s<i>-<j>`, one copy per site. */
export function makeLayout(nodesPerSite: number[], opts: { partitionCount?: number; seed?: number; capacities?: (site: number, i: number) => number } = {}): Layout {
  const sites = nodesPerSite.map((_, i) => site(`s${i}`, i === nodesPerSite.length - 1 && i > 1 ? 'fallback' : 'primary'));
  const nodes: LayoutNode[] = [];
  nodesPerSite.forEach((count, s) => {
    for (let i = 0; i < count; i++) {
      nodes.push(node(`n${opts.seed ?? 0}-s${s}-${i}`, `s${s}`, opts.capacities ? opts.capacities(s, i) : 1e12));
    }
  });
  return {
    version: 1,
    partitionCount: opts.partitionCount ?? 4096,
    sites,
    nodes,
    policies: [onePerSite('default', sites.map((s) => s.name))],
    defaultPolicy: 'default',
  };
}

/** A random layout: 1–4 sites of 1–8 nodes, random capacities, random node order, a few policies. */
export function randomLayout(seed: number, partitionCount = 256): Layout {
  const rnd = seededRandom(seed);
  const siteCount = 1 + Math.floor(rnd() * 4);
  const sites: SiteInfo[] = [];
  const nodes: LayoutNode[] = [];
  for (let s = 0; s < siteCount; s++) {
    sites.push(site(`site${s}`, s < 2 ? 'primary' : 'fallback'));
    const count = 1 + Math.floor(rnd() * 8);
    for (let i = 0; i < count; i++) {
      const capacityBytes = Math.floor((1 + rnd() * 9) * 1e11);
      nodes.push(node(`r${seed}-site${s}-${i}`, `site${s}`, capacityBytes, 'active', 7000 + i));
    }
  }
  shuffle(nodes, rnd);
  const activeCount = (s: string): number => nodes.filter((n) => n.site === s).length;
  const policies: ReplicationPolicy[] = [
    { name: 'med', match: { buckets: ['med-*'] }, rules: sites.map((s) => ({ site: s.name, copies: 1 + Math.floor(rnd() * activeCount(s.name)) })), ingest: 'strict' },
    { name: 'logs', match: { buckets: ['logs'], prefixes: ['2026/'] }, rules: [{ site: sites[0].name, copies: 1 }], ingest: 'balanced' },
    onePerSite('default', sites.map((s) => s.name)),
  ];
  return { version: 1, partitionCount, sites, nodes, policies, defaultPolicy: 'default' };
}

export function shuffle<T>(xs: T[], rnd: () => number): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
}

export function clone<T>(x: T): T {
  return JSON.parse(JSON.stringify(x)) as T;
}
