/**
 * Cross references between parsed resources (spec.grid, spec.site, rule sites, policy names),
 * resolved for one Grid. An object whose reference does not resolve is left out, with a message
 * that says which field names what; nothing throws, so the operator can put the message in a
 * condition instead of crash-looping.
 */
import type { Bucket, Grid, NodePool, ReplicationPolicyResource, Site } from '../api/types';
import type { ParsedResources } from './parse';

export interface ResolvedGrid {
  grid: Grid;
  sites: Site[];
  pools: NodePool[];
  policies: ReplicationPolicyResource[];
  buckets: Bucket[];
  errors: string[];
}

function sameNs(a: { metadata: { namespace?: string } }, b: { metadata: { namespace?: string } }): boolean {
  return (a.metadata.namespace ?? '') === (b.metadata.namespace ?? '');
}

/**
 * The objects of one grid: `gridName`, or the only grid when there is one. Returns undefined grid
 * (with errors) when no grid can be chosen. Objects that name another existing grid are not
 * errors; objects that name no existing grid are.
 */
export function resolveGrid(parsed: ParsedResources, gridName?: string): ResolvedGrid | { grid: undefined; errors: string[] } {
  const errors: string[] = [];
  let grid: Grid | undefined;
  if (gridName !== undefined) {
    grid = parsed.grids.find((g) => g.metadata.name === gridName);
    if (!grid) return { grid: undefined, errors: [`no Grid named ${gridName}`] };
  } else if (parsed.grids.length === 1) {
    grid = parsed.grids[0];
  } else {
    const names = parsed.grids.map((g) => g.metadata.name).join(', ');
    return { grid: undefined, errors: [parsed.grids.length === 0 ? 'no Grid found' : `several Grids (${names}): say which one`] };
  }
  const g = grid;
  const gridExists = (obj: { metadata: { namespace?: string } }, name: string): boolean =>
    parsed.grids.some((x) => x.metadata.name === name && sameNs(x, obj));
  const mine = <T extends { metadata: { name: string; namespace?: string }; spec: { grid: string }; kind: string }>(list: T[]): T[] =>
    list.filter((o) => {
      if (!gridExists(o, o.spec.grid)) errors.push(`${o.kind} ${o.metadata.name}: spec.grid ${JSON.stringify(o.spec.grid)} does not name a Grid`);
      return o.spec.grid === g.metadata.name && sameNs(o, g);
    });

  const sites = mine(parsed.sites);
  const siteNames = new Set(sites.map((s) => s.metadata.name));
  const allSites = new Set(parsed.sites.map((s) => `${s.metadata.namespace ?? ''}/${s.metadata.name}`));
  const pools = parsed.pools.filter((p) => {
    if (siteNames.has(p.spec.site) && sameNs(p, g)) return true;
    if (!allSites.has(`${p.metadata.namespace ?? ''}/${p.spec.site}`)) {
      errors.push(`NodePool ${p.metadata.name}: spec.site ${JSON.stringify(p.spec.site)} does not name a Site`);
    }
    return false;
  });
  const gridPolicies = mine(parsed.policies);
  const policies = gridPolicies.filter((p) => {
    const bad = p.spec.rules.map((r, i) => ({ r, i })).filter(({ r }) => !siteNames.has(r.site));
    for (const { r, i } of bad) {
      errors.push(`ReplicationPolicy ${p.metadata.name}: spec.rules[${i}].site ${JSON.stringify(r.site)} does not name a Site of grid ${g.metadata.name}`);
    }
    return bad.length === 0;
  });
  const policyNames = new Set(policies.map((p) => p.metadata.name));
  // The planner then falls back to a built-in one-copy-per-site policy (see plan.ts).
  if (!gridPolicies.some((p) => p.metadata.name === g.spec.defaultPolicy)) {
    errors.push(`Grid ${g.metadata.name}: spec.defaultPolicy ${JSON.stringify(g.spec.defaultPolicy)} does not name a ReplicationPolicy of this grid`);
  }
  const buckets = mine(parsed.buckets).filter((b) => {
    if (b.spec.policy === undefined || policyNames.has(b.spec.policy)) return true;
    errors.push(`Bucket ${b.metadata.name}: spec.policy ${JSON.stringify(b.spec.policy)} does not name a usable ReplicationPolicy of grid ${g.metadata.name}`);
    return false;
  });
  return { grid: g, sites, pools, policies, buckets, errors: dedupe(errors) };
}

function dedupe(xs: string[]): string[] {
  return [...new Set(xs)];
}
