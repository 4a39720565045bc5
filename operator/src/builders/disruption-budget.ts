/**
 * One PodDisruptionBudget per site: a node drain or a cluster upgrade takes at most one storage
 * node of a site at a time, so every policy keeps its copies in that site reachable but one. Pure.
 */
import type { V1PodDisruptionBudget } from '@kubernetes/client-node';
import type { Grid, Site } from '../api/types';
import { checkSameGrid, checkSubdomainName, commonLabels, LABELS, objectMeta, sitePdbName, sitePodSelector, STORAGE_NODE_COMPONENT } from './common';

/** Owned by the Site. */
export function buildSitePodDisruptionBudget(grid: Grid, site: Site): V1PodDisruptionBudget {
  checkSameGrid(site, grid);
  const name = checkSubdomainName(sitePdbName(grid, site), 'PodDisruptionBudget', `Site ${site.metadata.name}`);
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: objectMeta(name, site, { ...commonLabels(grid), [LABELS.component]: STORAGE_NODE_COMPONENT, [LABELS.site]: site.metadata.name }),
    spec: {
      maxUnavailable: 1,
      selector: { matchLabels: sitePodSelector(grid, site) },
      // A node that is not Ready (crash-looping, stuck) serves nothing: evicting it costs no
      // availability, and refusing would block a machine's drain behind a broken pod. Its volume
      // and data stay.
      unhealthyPodEvictionPolicy: 'AlwaysAllow',
    },
  };
}
