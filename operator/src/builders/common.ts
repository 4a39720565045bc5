/**
 * What every desired object shares: names, labels, selectors, owner references, and the error a
 * builder throws for input it cannot turn into a valid object. Pure.
 *
 * Names are functions of the custom resources only, never of time or order, so the same input
 * always yields the same objects and server-side apply sends no churn.
 */
import type { V1ObjectMeta, V1OwnerReference } from '@kubernetes/client-node';
import { API_VERSION, type Bucket, type Grid, type NodePool, type Site } from '../api/types';

/** A desired object cannot be built; the message names the object and the field, for a condition. */
export class BuildError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BuildError';
  }
}

/** The field manager for server-side apply of everything built here. */
export const FIELD_MANAGER = 'archipel-operator';

export const LABELS = {
  name: 'app.kubernetes.io/name',
  component: 'app.kubernetes.io/component',
  instance: 'app.kubernetes.io/instance',
  partOf: 'app.kubernetes.io/part-of',
  managedBy: 'app.kubernetes.io/managed-by',
  grid: 'storage.archipel.io/grid',
  site: 'storage.archipel.io/site',
  pool: 'storage.archipel.io/pool',
  bucket: 'storage.archipel.io/bucket',
} as const;

export const APP_NAME = 'archipel';
export const STORAGE_NODE_COMPONENT = 'storage-node';

/** Options the operator passes to every builder; all optional. */
export interface BuildOptions {
  /** The cluster's DNS domain, for the S3 endpoint in Bucket Secrets (default cluster.local). */
  clusterDomain?: string;
  /** Resources of a storage node where the NodePool says nothing (default DEFAULT_RESOURCES). */
  defaultResources?: ResourceSpec;
}

export interface ResourceSpec {
  requests?: { cpu?: string; memory?: string };
  limits?: { cpu?: string; memory?: string };
}

export const DEFAULT_CLUSTER_DOMAIN = 'cluster.local';

// ---- names ------------------------------------------------------------------------------------

/** Headless Service that gives each pod a DNS name and carries peer RPC (not-ready pods included). */
export const headlessServiceName = (grid: Grid): string => `${grid.metadata.name}-nodes`;
/** The grid-wide S3 Service: every Ready node of every site. */
export const gridS3ServiceName = (grid: Grid): string => `${grid.metadata.name}-s3`;
/** The S3 Service of one site: its Ready nodes only. */
export const siteS3ServiceName = (grid: Grid, site: Site): string => `${grid.metadata.name}-${site.metadata.name}-s3`;
export const sitePdbName = (grid: Grid, site: Site): string => `${grid.metadata.name}-${site.metadata.name}`;
export const configMapName = (grid: Grid): string => `${grid.metadata.name}-config`;
/** The grid Secret (internal RPC secret and admin token): spec.admin.secretName, default `<grid>-admin`. */
export const gridSecretName = (grid: Grid): string => grid.spec.admin.secretName ?? `${grid.metadata.name}-admin`;
/** The StatefulSet of a NodePool has the pool's name, so its pods (and node ids) are `<pool>-<ordinal>`. */
export const statefulSetName = (pool: NodePool): string => pool.metadata.name;
export const bucketSecretName = (bucket: Bucket): string => bucket.spec.secretName || `${bucket.spec.bucketName}-s3`;

/** DNS name of a Service inside the cluster, e.g. `demo-s3.storage.svc.cluster.local`. */
export function serviceHost(serviceName: string, namespace: string, options: BuildOptions = {}): string {
  return `${serviceName}.${namespace}.svc.${options.clusterDomain ?? DEFAULT_CLUSTER_DOMAIN}`;
}

const DNS_1035_LABEL = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/** Service names are DNS-1035 labels: at most 63 characters, starting with a letter. */
export function checkServiceName(name: string, from: string): string {
  if (!DNS_1035_LABEL.test(name)) {
    throw new BuildError(`${from}: the Service name ${JSON.stringify(name)} is not valid (at most 63 lowercase letters, digits or -, starting with a letter); use a shorter name`);
  }
  return name;
}

export function checkSubdomainName(name: string, kind: string, from: string): string {
  if (!DNS_1123_SUBDOMAIN.test(name)) throw new BuildError(`${from}: the ${kind} name ${JSON.stringify(name)} is not a valid DNS subdomain`);
  return name;
}

/**
 * A StatefulSet's pods are `<name>-<ordinal>` (DNS labels) and it labels them
 * `controller-revision-hash=<name>-<hash of up to 10 characters>`, a label value of at most 63.
 */
export const MAX_STATEFULSET_NAME = 52;

export function checkStatefulSetName(name: string, from: string): string {
  if (name.length > MAX_STATEFULSET_NAME || !DNS_1123_LABEL.test(name)) {
    throw new BuildError(`${from}: the StatefulSet name ${JSON.stringify(name)} must be a DNS label of at most ${MAX_STATEFULSET_NAME} characters (its pods are <name>-<ordinal>)`);
  }
  return name;
}

// ---- labels and selectors ---------------------------------------------------------------------

/** Labels on every object built for a grid. */
export function commonLabels(grid: Grid): Record<string, string> {
  return {
    [LABELS.managedBy]: FIELD_MANAGER,
    [LABELS.partOf]: APP_NAME,
    [LABELS.instance]: grid.metadata.name,
    [LABELS.name]: APP_NAME,
    [LABELS.grid]: grid.metadata.name,
  };
}

/** Every storage-node pod of a grid (the headless and grid S3 Services). */
export function gridPodSelector(grid: Grid): Record<string, string> {
  return { [LABELS.name]: APP_NAME, [LABELS.component]: STORAGE_NODE_COMPONENT, [LABELS.grid]: grid.metadata.name };
}

/** The storage-node pods of one site (per-site S3 Service, PodDisruptionBudget). */
export function sitePodSelector(grid: Grid, site: Site): Record<string, string> {
  return { ...gridPodSelector(grid), [LABELS.site]: site.metadata.name };
}

/**
 * The pods of one NodePool: the StatefulSet's selector, immutable once created, so it holds only
 * what never changes for a pool (its grid, through the site, and its name).
 */
export function poolPodSelector(grid: Grid, pool: NodePool): Record<string, string> {
  return { ...gridPodSelector(grid), [LABELS.pool]: pool.metadata.name };
}

/** `a=b,c=d` with sorted keys: NodePool status.selector for the scale subresource. */
export function selectorString(selector: Record<string, string>): string {
  return Object.keys(selector).sort().map((k) => `${k}=${selector[k]}`).join(',');
}

/** A copy with keys in sorted order, so maps from user input serialize the same way every time. */
export function sortedMap(m: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(m).sort()) out[k] = m[k];
  return out;
}

// ---- owners and metadata ----------------------------------------------------------------------

type Owner = Grid | Site | NodePool | Bucket;

function describe(o: Owner): string {
  return `${o.kind} ${o.metadata.name}`;
}

/** The owner's namespace; objects from the API server always have one. */
export function namespaceOf(o: Owner): string {
  const ns = o.metadata.namespace;
  if (!ns) throw new BuildError(`${describe(o)}: metadata.namespace is missing (objects must be read from the API server)`);
  return ns;
}

/** The controller reference to `owner`: deleting the owner garbage-collects the object. */
export function ownerReference(owner: Owner): V1OwnerReference {
  const uid = owner.metadata.uid;
  if (!uid) throw new BuildError(`${describe(owner)}: metadata.uid is missing (owner references need objects read from the API server)`);
  return { apiVersion: API_VERSION, kind: owner.kind, name: owner.metadata.name, uid, controller: true, blockOwnerDeletion: true };
}

/** Metadata of an object owned by `owner`, in the owner's namespace. */
export function objectMeta(name: string, owner: Owner, labels: Record<string, string>): V1ObjectMeta {
  return { name, namespace: namespaceOf(owner), labels, ownerReferences: [ownerReference(owner)] };
}

/** Objects of one grid live in the grid's namespace and name it in spec.grid. */
export function checkSameGrid(obj: Site | Bucket, grid: Grid): void {
  if (obj.spec.grid !== grid.metadata.name) {
    throw new BuildError(`${describe(obj)}: spec.grid is ${JSON.stringify(obj.spec.grid)}, not ${JSON.stringify(grid.metadata.name)}`);
  }
  if ((obj.metadata.namespace ?? '') !== (grid.metadata.namespace ?? '')) {
    throw new BuildError(`${describe(obj)}: in namespace ${JSON.stringify(obj.metadata.namespace ?? '')}, but Grid ${grid.metadata.name} is in ${JSON.stringify(grid.metadata.namespace ?? '')}`);
  }
}

/**
 * The Site a NodePool names, among `sites`, checked to belong to `grid` in the same namespace.
 * Throws a message an SRE can act on when it does not exist.
 */
export function siteOfPool(pool: NodePool, grid: Grid, sites: readonly Site[]): Site {
  const ns = pool.metadata.namespace ?? '';
  if ((grid.metadata.namespace ?? '') !== ns) {
    throw new BuildError(`NodePool ${pool.metadata.name}: in namespace ${JSON.stringify(ns)}, but Grid ${grid.metadata.name} is in ${JSON.stringify(grid.metadata.namespace ?? '')}`);
  }
  const site = sites.find((s) => s.metadata.name === pool.spec.site && (s.metadata.namespace ?? '') === ns);
  if (!site) {
    throw new BuildError(`NodePool ${pool.metadata.name}: spec.site ${JSON.stringify(pool.spec.site)} does not name a Site in namespace ${JSON.stringify(ns)}`);
  }
  if (site.spec.grid !== grid.metadata.name) {
    throw new BuildError(`NodePool ${pool.metadata.name}: Site ${site.metadata.name} belongs to grid ${JSON.stringify(site.spec.grid)}, not ${JSON.stringify(grid.metadata.name)}`);
  }
  return site;
}
