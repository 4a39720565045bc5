/**
 * Every desired object of one grid, in a fixed order, for the reconciler to apply. Like
 * planner/resolve.ts it never throws: an object that cannot be built is left out and its reason is
 * in `problems` (for a Degraded condition), so one bad NodePool does not stop the others. Pure.
 */
import type { V1ConfigMap, V1PodDisruptionBudget, V1Secret, V1Service, V1StatefulSet } from '@kubernetes/client-node';
import type { Grid, NodePool, Site } from '../api/types';
import { BuildError, type BuildOptions } from './common';
import { buildSitePodDisruptionBudget } from './disruption-budget';
import { buildNodeConfigMap } from './node-config';
import { buildGridSecret, type GridSecretValues } from './secrets';
import { buildGridS3Service, buildHeadlessService, buildSiteS3Service } from './services';
import { buildStatefulSet } from './statefulset';

export type DesiredObject = V1ConfigMap | V1Secret | V1Service | V1PodDisruptionBudget | V1StatefulSet;

export interface GridObjectsInput {
  grid: Grid;
  /** Sites of the grid's namespace; those of other grids are ignored. */
  sites: readonly Site[];
  /** NodePools of the grid's namespace; those whose site belongs to another grid are ignored. */
  pools: readonly NodePool[];
  /** The grid Secret's values, generated once by the caller and read back afterwards. */
  secrets: GridSecretValues;
  /** Pods to run per pool name where it differs from spec.replicas (a scale-in still draining). */
  replicas?: Readonly<Record<string, number>>;
}

export interface DesiredObjects {
  /** ConfigMap, Secret, headless and grid S3 Services, then per site (by name) its S3 Service and PDB, then per pool (by name) its StatefulSet. */
  objects: DesiredObject[];
  /** Readable; one per object left out. */
  problems: string[];
}

const byName = <T extends { metadata: { name: string } }>(a: T, b: T): number =>
  a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;

export function buildGridObjects(input: GridObjectsInput, options: BuildOptions = {}): DesiredObjects {
  const { grid } = input;
  const objects: DesiredObject[] = [];
  const problems: string[] = [];
  const add = (build: () => DesiredObject): void => {
    try {
      objects.push(build());
    } catch (e) {
      if (!(e instanceof BuildError)) throw e; // a bug, not bad input
      if (!problems.includes(e.message)) problems.push(e.message);
    }
  };
  const ns = grid.metadata.namespace ?? '';
  const inNs = (o: { metadata: { namespace?: string } }): boolean => (o.metadata.namespace ?? '') === ns;
  const sites = input.sites.filter((s) => inNs(s) && s.spec.grid === grid.metadata.name).sort(byName);
  const otherGridSites = new Set(input.sites.filter((s) => inNs(s) && s.spec.grid !== grid.metadata.name).map((s) => s.metadata.name));
  const pools = input.pools.filter((p) => inNs(p) && !otherGridSites.has(p.spec.site)).sort(byName);

  add(() => buildNodeConfigMap(grid));
  add(() => buildGridSecret(grid, input.secrets));
  add(() => buildHeadlessService(grid));
  add(() => buildGridS3Service(grid));
  for (const site of sites) {
    add(() => buildSiteS3Service(grid, site));
    add(() => buildSitePodDisruptionBudget(grid, site));
  }
  for (const pool of pools) {
    const replicas = input.replicas?.[pool.metadata.name];
    add(() => buildStatefulSet(pool, grid, sites, replicas === undefined ? options : { ...options, replicas }));
  }
  return { objects, problems };
}
