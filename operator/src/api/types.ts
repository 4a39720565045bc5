/**
 * The custom resources of group storage.archipel.io, version v1alpha1 (ARCHITECTURE.md §1, issue 6),
 * with their defaults and condition vocabulary kept together, as kubebuilder API packages do.
 * Spec fields marked "(default X)" are optional in YAML; the parser fills them in, so code after
 * `parseResources` sees every defaulted field set. The CRD schemas in crds/ must say the same.
 */

export const GROUP = 'storage.archipel.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

export type Kind = 'Grid' | 'Site' | 'NodePool' | 'ReplicationPolicy' | 'Bucket';
export const KINDS: readonly Kind[] = ['Grid', 'Site', 'NodePool', 'ReplicationPolicy', 'Bucket'];

export const DEFAULTS = {
  image: 'ghcr.io/archipel/storage-node:0.1.0',
  partitionCount: 4096,
  defaultPolicy: 'default',
  s3Port: 9000,
  adminPort: 9001,
  rpcPort: 9002,
  region: 'us-east-1',
  siteRole: 'primary',
  siteState: 'Active',
  replicas: 1,
  storageSize: '10Gi',
  copies: 1,
  ingest: 'balanced',
  priority: 0,
  versioning: 'Disabled',
  deletionPolicy: 'Retain',
  auditEnabled: true,
  encryptionEnabled: false,
} as const;

/** Limits the schema enforces too; they keep a grid plannable and a layout small. */
export const LIMITS = {
  maxReplicas: 256,
  maxPartitionCount: 65536,
  maxCopies: 16,
  maxRules: 32,
  maxGlobs: 64,
  maxPriority: 1000,
  maxQuotaBytes: Number.MAX_SAFE_INTEGER,
} as const;

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ObjectMeta {
  name: string;
  /** Absent in a local YAML file; cross references resolve within one namespace. */
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: OwnerReference[];
}

export type ConditionStatus = 'True' | 'False' | 'Unknown';

/** The condition types the operator sets. Ready, Progressing and Degraded exist on every kind. */
export type ConditionType =
  | 'Ready'
  | 'Progressing'
  | 'Degraded'
  /** Grid, NodePool: partitions are moving to new owners. */
  | 'Rebalancing'
  /** Grid, Site: a site's nodes are not Ready (or the site is declared Failed). */
  | 'SiteUnavailable'
  /** ReplicationPolicy, Grid: a rule asks for more copies than its site can hold, or names a failed site. */
  | 'PolicyUnsatisfiable'
  /** Any kind: spec.grid, spec.site or spec.policy names an object that does not exist. */
  | 'ReferenceNotFound';

export interface Condition {
  type: ConditionType;
  status: ConditionStatus;
  /** CamelCase, machine-readable. */
  reason: string;
  /** A sentence for people. */
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface CommonStatus {
  observedGeneration?: number;
  conditions?: Condition[];
}

interface Resource<K extends Kind, Spec, Status> {
  apiVersion: typeof API_VERSION;
  kind: K;
  metadata: ObjectMeta;
  spec: Spec;
  status?: Status;
}

// ---- Grid -------------------------------------------------------------------------------------

export interface GridSpec {
  /** Storage node image (default DEFAULTS.image). */
  image: string;
  /** Fixed for the life of the grid; immutable (default 4096, see decision 0009). */
  partitionCount: number;
  /** Name of the ReplicationPolicy used where no other matches (default `default`). */
  defaultPolicy: string;
  s3: {
    /** default 9000 */
    port: number;
    /** default us-east-1 */
    region: string;
    /** Secret of type kubernetes.io/tls; absent means plain HTTP inside the cluster. */
    tls?: { secretName: string };
  };
  admin: {
    /** default 9001 */
    port: number;
    /** Secret holding the admin token (default `<grid>-admin`, created if missing). */
    secretName?: string;
  };
  rpc: {
    /** Peer RPC port (default 9002). */
    port: number;
  };
  encryption: {
    /** Encryption at rest (default false). */
    enabled: boolean;
    /** Secret holding the key; required when enabled. */
    keySecretName?: string;
  };
  audit: {
    /** default true */
    enabled: boolean;
    /** Days audit records are kept; absent keeps them forever. */
    retentionDays?: number;
  };
}

export type GridPhase = 'Pending' | 'Ready' | 'Degraded' | 'Rebalancing';

export interface GridStatus extends CommonStatus {
  phase?: GridPhase;
  layoutVersion?: number;
  readyNodes?: number;
  desiredNodes?: number;
  sites?: { name: string; role: string; readyNodes: number; desiredNodes: number; available: boolean }[];
  rebalance?: RebalanceProgress;
  /** Policies that cannot currently be met, with the reason. */
  degradedPolicies?: { name: string; reason: string }[];
  owedCopies?: number;
}

export interface RebalanceProgress {
  partitionsToMove: number;
  partitionsMoved: number;
  bytesToMove: number;
  bytesMoved: number;
  /** For printer columns, e.g. "42%". */
  progress: string;
}

export type Grid = Resource<'Grid', GridSpec, GridStatus>;

// ---- Site -------------------------------------------------------------------------------------

export type SiteRoleSpec = 'primary' | 'fallback';
/** `Failed` declares the site lost for good: its nodes leave the layout. */
export type SiteStateSpec = 'Active' | 'Failed';

export interface SiteSpec {
  /** The Grid this site belongs to; required. */
  grid: string;
  /** default primary */
  role: SiteRoleSpec;
  /** Zone label value; pods get topology.kubernetes.io/zone=<zone> affinity. */
  zone?: string;
  /** Extra node selector for the site's pods. */
  nodeSelector?: Record<string, string>;
  /** default Active */
  state: SiteStateSpec;
}

export interface SiteStatus extends CommonStatus {
  phase?: 'Available' | 'Unavailable' | 'Failed';
  readyNodes?: number;
  desiredNodes?: number;
  owedCopies?: number;
}

export type Site = Resource<'Site', SiteSpec, SiteStatus>;

// ---- NodePool ---------------------------------------------------------------------------------

export interface NodePoolSpec {
  /** The Site whose nodes these are; required and immutable (the grid is the site's). */
  site: string;
  /** Number of storage nodes, ≥ 1 (default 1). The scale subresource's specReplicasPath. */
  replicas: number;
  storage: {
    /** PVC size per node, a Kubernetes quantity (default 10Gi); also the node's placement weight. */
    size: string;
    storageClassName?: string;
  };
  resources?: {
    requests?: { cpu?: string; memory?: string };
    limits?: { cpu?: string; memory?: string };
  };
  /** Overrides the Grid's image for this pool. */
  image?: string;
}

export interface NodePoolStatus extends CommonStatus {
  /** Scale subresource statusReplicasPath: pods that exist. */
  replicas?: number;
  readyReplicas?: number;
  /** Scale subresource labelSelectorPath. */
  selector?: string;
  /** Node ids in the layout, with their state. */
  nodes?: { id: string; state: 'active' | 'draining' | 'failed'; ready: boolean }[];
  rebalance?: RebalanceProgress;
}

export type NodePool = Resource<'NodePool', NodePoolSpec, NodePoolStatus>;

// ---- ReplicationPolicy ------------------------------------------------------------------------

export type IngestSpec = 'strict' | 'balanced' | 'dualCommit';

export interface ReplicationPolicySpec {
  /** The Grid this policy belongs to; required. */
  grid: string;
  /** Higher first when several policies match a bucket; ties by name (default 0). */
  priority: number;
  match: {
    /** Bucket names or globs (`*`, `?`) (default ["*"]). */
    buckets: string[];
    /** Key prefixes; absent means every key. */
    prefixes?: string[];
  };
  /** At least one; each site at most once. */
  rules: { site: string; /** default 1 */ copies: number }[];
  /** default balanced */
  ingest: IngestSpec;
}

export interface ReplicationPolicyStatus extends CommonStatus {
  /** Objects not yet at their placement. */
  objectsBehind?: number;
}

export type ReplicationPolicyResource = Resource<'ReplicationPolicy', ReplicationPolicySpec, ReplicationPolicyStatus>;

// ---- Bucket -----------------------------------------------------------------------------------

export type VersioningSpec = 'Enabled' | 'Suspended' | 'Disabled';
export type DeletionPolicy = 'Retain' | 'Delete';
export type Grant = 'read' | 'write' | 'owner';

export interface BucketSpec {
  /** The Grid that holds the bucket; required. */
  grid: string;
  /** The S3 bucket name (default metadata.name); immutable. */
  bucketName: string;
  /** ReplicationPolicy name; absent lets the grid's policies decide by bucket name. */
  policy?: string;
  /** default Disabled */
  versioning: VersioningSpec;
  objectLock?: {
    /** Immutable: object lock can only be chosen at creation. Requires versioning Enabled. */
    enabled: boolean;
    defaultRetention?: {
      mode: 'GOVERNANCE' | 'COMPLIANCE';
      /** Days or years, not both. */
      days?: number;
      years?: number;
    };
  };
  quotaBytes?: number;
  /** default Retain; Delete refuses while any object is under retention. */
  deletionPolicy: DeletionPolicy;
  /** Secret with the credentials (default `<bucketName>-s3`). */
  secretName: string;
  /** Grants of the access key created for the bucket (default ["owner"]). */
  grants: Grant[];
}

export interface BucketStatus extends CommonStatus {
  phase?: 'Pending' | 'Ready' | 'Deleting' | 'Failed';
  accessKeyId?: string;
  endpoint?: string;
}

export type Bucket = Resource<'Bucket', BucketSpec, BucketStatus>;

export type ArchipelResource = Grid | Site | NodePool | ReplicationPolicyResource | Bucket;
