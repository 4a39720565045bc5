/**
 * The Services of a grid: a headless one for peer RPC and pod DNS names, a grid-wide S3 Service
 * and one S3 Service per site. The S3 Services select storage-node pods by label; Kubernetes puts
 * only Ready pods (nodes that serve S3) behind them. Pure.
 */
import type { V1Service, V1ServicePort } from '@kubernetes/client-node';
import type { Grid, Site } from '../api/types';
import {
  checkSameGrid, checkServiceName, commonLabels, gridPodSelector, gridS3ServiceName, headlessServiceName, LABELS, objectMeta,
  sitePodSelector, siteS3ServiceName, STORAGE_NODE_COMPONENT,
} from './common';

const s3Port = (grid: Grid): V1ServicePort => ({ name: 's3', port: grid.spec.s3.port, targetPort: 's3', protocol: 'TCP' });

/**
 * Headless (no cluster IP): `<pod>.<grid>-nodes.<ns>.svc` for every node. publishNotReadyAddresses,
 * because a node must reach its peers before it is Ready (it becomes Ready only once it holds a
 * layout and has caught up with the grid's metadata through peer RPC). Owned by the Grid.
 */
export function buildHeadlessService(grid: Grid): V1Service {
  const name = checkServiceName(headlessServiceName(grid), `Grid ${grid.metadata.name}`);
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: objectMeta(name, grid, { ...commonLabels(grid), [LABELS.component]: STORAGE_NODE_COMPONENT }),
    spec: {
      clusterIP: 'None',
      publishNotReadyAddresses: true,
      selector: gridPodSelector(grid),
      ports: [
        { name: 'rpc', port: grid.spec.rpc.port, targetPort: 'rpc', protocol: 'TCP' },
        s3Port(grid),
        { name: 'admin', port: grid.spec.admin.port, targetPort: 'admin', protocol: 'TCP' },
      ],
    },
  };
}

/** The grid's S3 endpoint: every Ready node of every site. Owned by the Grid. */
export function buildGridS3Service(grid: Grid): V1Service {
  const name = checkServiceName(gridS3ServiceName(grid), `Grid ${grid.metadata.name}`);
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: objectMeta(name, grid, { ...commonLabels(grid), [LABELS.component]: STORAGE_NODE_COMPONENT }),
    spec: { type: 'ClusterIP', selector: gridPodSelector(grid), ports: [s3Port(grid)] },
  };
}

/** One site's S3 endpoint: its Ready nodes only. Owned by the Site, so it goes with the Site. */
export function buildSiteS3Service(grid: Grid, site: Site): V1Service {
  checkSameGrid(site, grid);
  const name = checkServiceName(siteS3ServiceName(grid, site), `Site ${site.metadata.name}`);
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: objectMeta(name, site, { ...commonLabels(grid), [LABELS.component]: STORAGE_NODE_COMPONENT, [LABELS.site]: site.metadata.name }),
    spec: { type: 'ClusterIP', selector: sitePodSelector(grid, site), ports: [s3Port(grid)] },
  };
}
