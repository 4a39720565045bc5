/**
 * The StatefulSet of a NodePool: its pods are the pool's storage nodes, `<pool>-<ordinal>`, each
 * with its own PersistentVolumeClaim. Pure.
 */
import type {
  V1Affinity, V1Container, V1EnvVar, V1PersistentVolumeClaim, V1PodSecurityContext, V1PodSpec, V1Probe, V1StatefulSet, V1Volume,
} from '@kubernetes/client-node';
import { LIMITS, type Grid, type NodePool, type Site } from '../api/types';
import {
  BuildError, checkStatefulSetName, commonLabels, gridSecretName, headlessServiceName, LABELS, objectMeta, poolPodSelector,
  siteOfPool, sortedMap, STORAGE_NODE_COMPONENT, statefulSetName, type BuildOptions,
} from './common';
import { buildNodeConfigMap, CONFIG_HASH_ANNOTATION, CONFIG_KEY, configHash, ENV, PATHS, SECRET_KEYS } from './node-config';
import { DEFAULT_RESOURCES, nodeResources } from './resources';

export const ZONE_LABEL = 'topology.kubernetes.io/zone';
export const HOSTNAME_LABEL = 'kubernetes.io/hostname';
export const CONTAINER_NAME = 'storage-node';

/** The user and group the node runs as; the image must let this uid read its files. */
export const NODE_UID = 10001;

/**
 * Stopping a pod, in order:
 * 1. preStop sleeps PRE_STOP_SLEEP_SECONDS while the pod's removal from Service endpoints reaches
 *    kube-proxy and load balancers: without it, new requests still arrive at a node that is closing.
 * 2. SIGTERM: the node refuses new work and drains in-flight S3 requests for up to 10 s, then its
 *    peer RPC for up to 10 s (storage-node/src/main.ts DRAIN_DEADLINE_MS, one after the other).
 * 3. It closes the audit log and syncs the metadata: STOP_MARGIN_SECONDS.
 * The grace period covers all of it; SIGKILL comes only after.
 */
export const PRE_STOP_SLEEP_SECONDS = 5;
export const NODE_DRAIN_SECONDS = 10 + 10;
export const STOP_MARGIN_SECONDS = 10;
export const TERMINATION_GRACE_SECONDS = PRE_STOP_SLEEP_SECONDS + NODE_DRAIN_SECONDS + STOP_MARGIN_SECONDS;

/** Bound on the /tmp emptyDir: the node keeps its data on the volume, never here. */
export const TMP_SIZE_LIMIT = '1Gi';

/** Where a site's pods run: its zone by node affinity, plus its extra node selector. */
export interface SitePlacement {
  zone?: string;
  nodeSelector?: Record<string, string>;
}

/**
 * Site.spec.zone names the zone (topology.kubernetes.io/zone); spec.nodeSelector adds labels.
 * A Site with neither runs in the zone named like the site.
 */
export function sitePlacement(site: Site): SitePlacement {
  const selector = site.spec.nodeSelector && Object.keys(site.spec.nodeSelector).length > 0 ? sortedMap(site.spec.nodeSelector) : undefined;
  const zone = site.spec.zone ?? (selector ? undefined : site.metadata.name);
  const selectorZone = selector?.[ZONE_LABEL];
  if (zone !== undefined && selectorZone !== undefined && selectorZone !== zone) {
    throw new BuildError(`Site ${site.metadata.name}: spec.nodeSelector asks ${ZONE_LABEL}=${selectorZone} but spec.zone is ${zone}; no node can match both`);
  }
  const out: SitePlacement = {};
  if (zone !== undefined) out.zone = zone;
  if (selector) out.nodeSelector = selector;
  return out;
}

function affinity(grid: Grid, pool: NodePool, placement: SitePlacement): V1Affinity {
  const out: V1Affinity = {
    // Preferred, not required: a pool may have more nodes than its site has machines (and the test
    // cluster has one machine per site); two nodes of a pool on one machine still beat no node.
    podAntiAffinity: {
      preferredDuringSchedulingIgnoredDuringExecution: [{
        weight: 100,
        podAffinityTerm: { topologyKey: HOSTNAME_LABEL, labelSelector: { matchLabels: poolPodSelector(grid, pool) } },
      }],
    },
  };
  if (placement.zone !== undefined) {
    out.nodeAffinity = {
      requiredDuringSchedulingIgnoredDuringExecution: {
        nodeSelectorTerms: [{ matchExpressions: [{ key: ZONE_LABEL, operator: 'In', values: [placement.zone] }] }],
      },
    };
  }
  return out;
}

function httpProbe(path: string, periodSeconds: number, failureThreshold: number): V1Probe {
  return { httpGet: { path, port: 'admin', scheme: 'HTTP' }, periodSeconds, timeoutSeconds: 3, failureThreshold };
}

const fieldEnv = (name: string, fieldPath: string): V1EnvVar => ({ name, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } } });

function env(grid: Grid, pool: NodePool): V1EnvVar[] {
  return [
    fieldEnv(ENV.podName, 'metadata.name'),
    fieldEnv(ENV.podNamespace, 'metadata.namespace'),
    fieldEnv(ENV.podIp, 'status.podIP'),
    { name: ENV.site, value: pool.spec.site },
    { name: ENV.pool, value: pool.metadata.name },
    { name: ENV.dataDir, value: PATHS.dataDir },
    { name: ENV.gridSecretFile, value: PATHS.gridSecretFile },
    { name: ENV.adminToken, valueFrom: { secretKeyRef: { name: gridSecretName(grid), key: SECRET_KEYS.adminToken } } },
    // SQLite's and Node's scratch files go to the /tmp emptyDir, never to the read-only root.
    { name: 'TMPDIR', value: PATHS.tmp },
  ];
}

function container(grid: Grid, pool: NodePool, options: BuildOptions): V1Container {
  return {
    name: CONTAINER_NAME,
    image: pool.spec.image ?? grid.spec.image,
    // The image's ENTRYPOINT is the `archipel` CLI.
    args: ['node', '--config', PATHS.configFile],
    ports: [
      { name: 's3', containerPort: grid.spec.s3.port, protocol: 'TCP' },
      { name: 'admin', containerPort: grid.spec.admin.port, protocol: 'TCP' },
      { name: 'rpc', containerPort: grid.spec.rpc.port, protocol: 'TCP' },
    ],
    env: env(grid, pool),
    resources: nodeResources(pool, options.defaultResources ?? DEFAULT_RESOURCES),
    // Opening a large metadata database and replaying its WAL can take minutes: liveness waits for
    // the first /health (up to 10 min) instead of killing a node that is starting.
    startupProbe: httpProbe('/health', 5, 120),
    // Ready = serves S3 (holds a layout that lists it, knows the grid's buckets and keys); only
    // Ready pods are in the S3 Services.
    readinessProbe: httpProbe('/ready', 5, 2),
    // /health = the process answers. A minute without an answer restarts it; a slow disk alone
    // (fsync stalls) does not block the admin listener that long.
    livenessProbe: httpProbe('/health', 10, 6),
    lifecycle: { preStop: { sleep: { seconds: PRE_STOP_SLEEP_SECONDS } } },
    securityContext: {
      runAsNonRoot: true,
      runAsUser: NODE_UID,
      runAsGroup: NODE_UID,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    },
    volumeMounts: [
      { name: 'data', mountPath: PATHS.dataMount },
      { name: 'config', mountPath: PATHS.configDir, readOnly: true },
      { name: 'grid-secret', mountPath: PATHS.secretDir, readOnly: true },
      { name: 'tmp', mountPath: PATHS.tmp },
    ],
  };
}

function volumes(grid: Grid): V1Volume[] {
  return [
    { name: 'config', configMap: { name: buildNodeConfigMap(grid).metadata!.name!, items: [{ key: CONFIG_KEY, path: CONFIG_KEY }] } },
    // Only the RPC secret is a file; 0440 with fsGroup: readable by the node's group, nobody else.
    { name: 'grid-secret', secret: { secretName: gridSecretName(grid), items: [{ key: SECRET_KEYS.gridSecret, path: SECRET_KEYS.gridSecret }], defaultMode: 0o440 } },
    { name: 'tmp', emptyDir: { sizeLimit: TMP_SIZE_LIMIT } },
  ];
}

function podSecurityContext(): V1PodSecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: NODE_UID,
    runAsGroup: NODE_UID,
    fsGroup: NODE_UID,
    // A volume holds millions of blob files: chown them only when the root's owner is wrong, not at
    // every start.
    fsGroupChangePolicy: 'OnRootMismatch',
    seccompProfile: { type: 'RuntimeDefault' },
  };
}

function claimTemplate(grid: Grid, pool: NodePool, site: Site): V1PersistentVolumeClaim {
  const spec: V1PersistentVolumeClaim['spec'] = {
    accessModes: ['ReadWriteOnce'],
    resources: { requests: { storage: pool.spec.storage.size } },
  };
  if (pool.spec.storage.storageClassName !== undefined) spec.storageClassName = pool.spec.storage.storageClassName;
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name: 'data', labels: { ...poolPodSelector(grid, pool), [LABELS.site]: site.metadata.name } },
    spec,
  };
}

export interface StatefulSetOptions extends BuildOptions {
  /**
   * Pods to run now; default spec.replicas. A scale-in drains the nodes beyond spec.replicas
   * first: until they are drained, the reconciler passes the current count here so the
   * StatefulSet does not stop them early.
   */
  replicas?: number;
}

/**
 * The StatefulSet of `pool`, owned by it. `sites` are the Sites of the pool's namespace (at least
 * the pool's); throws a BuildError when the pool's site does not exist or belongs to another grid.
 */
export function buildStatefulSet(pool: NodePool, grid: Grid, sites: readonly Site[], options: StatefulSetOptions = {}): V1StatefulSet {
  const from = `NodePool ${pool.metadata.name}`;
  const name = checkStatefulSetName(statefulSetName(pool), from);
  const replicas = options.replicas ?? pool.spec.replicas;
  if (!Number.isInteger(replicas) || replicas < 0 || replicas > LIMITS.maxReplicas) {
    throw new BuildError(`${from}: cannot run ${replicas} replicas (an integer from 0 to ${LIMITS.maxReplicas})`);
  }
  const site = siteOfPool(pool, grid, sites);
  const placement = sitePlacement(site);
  const selector = poolPodSelector(grid, pool);
  const podLabels = { ...commonLabels(grid), [LABELS.component]: STORAGE_NODE_COMPONENT, [LABELS.site]: site.metadata.name, [LABELS.pool]: pool.metadata.name };
  const podSpec: V1PodSpec = {
    containers: [container(grid, pool, options)],
    volumes: volumes(grid),
    securityContext: podSecurityContext(),
    affinity: affinity(grid, pool, placement),
    terminationGracePeriodSeconds: TERMINATION_GRACE_SECONDS,
    // The node never calls the Kubernetes API, and hundreds of Service variables in its
    // environment would only be noise.
    automountServiceAccountToken: false,
    enableServiceLinks: false,
  };
  if (placement.nodeSelector) podSpec.nodeSelector = placement.nodeSelector;
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: objectMeta(name, pool, { ...commonLabels(grid), [LABELS.component]: STORAGE_NODE_COMPONENT, [LABELS.site]: site.metadata.name, [LABELS.pool]: pool.metadata.name }),
    spec: {
      replicas,
      serviceName: headlessServiceName(grid),
      selector: { matchLabels: selector },
      // Parallel, not OrderedReady. A node is Ready only once it holds a layout that lists it,
      // and the operator adds nodes to the layout when their processes are up: OrderedReady would
      // start one pod per layout change (a rebalance each) and stall the whole pool behind one pod
      // that cannot become Ready, for example after a site outage. Nodes of a pool are peers with
      // no start order; scale-in is safe because the operator drains nodes before it lowers
      // replicas. Rolling updates still go one pod at a time (updateStrategy).
      podManagementPolicy: 'Parallel',
      updateStrategy: { type: 'RollingUpdate', rollingUpdate: { partition: 0 } },
      // A volume holds acknowledged data: deleting or scaling the StatefulSet never deletes it.
      persistentVolumeClaimRetentionPolicy: { whenDeleted: 'Retain', whenScaled: 'Retain' },
      template: {
        metadata: { labels: podLabels, annotations: { [CONFIG_HASH_ANNOTATION]: configHash(buildNodeConfigMap(grid)) } },
        spec: podSpec,
      },
      volumeClaimTemplates: [claimTemplate(grid, pool, site)],
    },
  };
}
