/**
 * Where each local node listens: pure, so the rules are tested without processes.
 *
 * Site i (0-based, in the order sites are first seen, kept for the life of the grid) has the
 * loopback addresses 127.0.0.(10·(i+1)+1) to 127.0.0.(10·(i+1)+9); its nodes take them in order
 * (pools by name, then ordinals). So the first site's nodes are 127.0.0.11, .12, …, the second's
 * 127.0.0.21, .22, …. Linux routes all of
 * 127.0.0.0/8 to the loopback interface, so no setup is needed. A node keeps its address once given,
 * so editing the file never moves a node that stays.
 */
import type { ResolvedGrid } from '../../operator/src/planner/resolve';
import { LocalError, type LocalNode, type LocalSite, type PortMode } from './state';

export const MAX_SITES = 24; // a 25th site would need 127.0.0.251-259, past the last usable address
export const MAX_NODES_PER_SITE = 9;

export interface WantedNode {
  id: string;
  site: string;
  pool: string;
}

/** The nodes the pools ask for (`<pool>-<ordinal>`), sites declared Failed left out. */
export function wantedNodes(r: ResolvedGrid): WantedNode[] {
  const failed = new Set(r.sites.filter((s) => s.spec.state === 'Failed').map((s) => s.metadata.name));
  const pools = [...r.pools].sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0));
  return pools
    .filter((p) => !failed.has(p.spec.site))
    .flatMap((p) => Array.from({ length: p.spec.replicas }, (_, i) => ({ id: `${p.metadata.name}-${i}`, site: p.spec.site, pool: p.metadata.name })));
}

export function hostOf(siteIndex: number, slot: number): string {
  return `127.0.0.${10 * (siteIndex + 1) + slot + 1}`;
}

/**
 * The sites and nodes after this `up`: known ones keep their index, slot and ports; new ones take
 * the lowest free index or slot. Nodes no longer wanted stay (their data is still there).
 */
export function assignAddresses(r: ResolvedGrid, known: { sites: LocalSite[]; nodes: LocalNode[] }, wanted: WantedNode[]): { sites: LocalSite[]; nodes: LocalNode[] } {
  const sites = known.sites.map((s) => ({ ...s }));
  for (const s of r.sites) {
    const old = sites.find((x) => x.name === s.metadata.name);
    if (old) { old.role = s.spec.role; continue; }
    const index = lowestFree(sites.map((x) => x.index));
    if (index >= MAX_SITES) throw new LocalError(`site ${s.metadata.name}: the local runtime runs at most ${MAX_SITES} sites`, 2);
    sites.push({ name: s.metadata.name, role: s.spec.role, index });
  }
  const nodes = known.nodes.map((n) => ({ ...n }));
  for (const w of wanted) {
    if (nodes.some((n) => n.id === w.id)) continue;
    const site = sites.find((s) => s.name === w.site);
    if (!site) throw new LocalError(`node ${w.id}: site ${w.site} is not known`, 2); // resolveGrid keeps only pools of known sites
    const slot = lowestFree(nodes.filter((n) => n.site === w.site).map((n) => n.slot));
    if (slot >= MAX_NODES_PER_SITE) throw new LocalError(`site ${w.site}: the local runtime runs at most ${MAX_NODES_PER_SITE} nodes per site`, 2);
    nodes.push({ ...w, slot, host: hostOf(site.index, slot), s3Port: 0, adminPort: 0, rpcPort: 0, pid: null });
  }
  return { sites, nodes };
}

export interface Ports {
  s3Port: number;
  adminPort: number;
  rpcPort: number;
}

/** The ports a node is started with: the Grid's (fixed), or the ones it had last (auto; 0 = any free one). */
export function portsFor(n: LocalNode, mode: PortMode, grid: ResolvedGrid['grid']): Ports {
  if (mode === 'fixed') return { s3Port: grid.spec.s3.port, adminPort: grid.spec.admin.port, rpcPort: grid.spec.rpc.port };
  return { s3Port: n.s3Port, adminPort: n.adminPort, rpcPort: n.rpcPort };
}

function lowestFree(used: number[]): number {
  let i = 0;
  while (used.includes(i)) i++;
  return i;
}
