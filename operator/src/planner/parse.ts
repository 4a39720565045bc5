/**
 * Custom resources from YAML (the local runtime's file) or from objects (the operator's informers)
 * into typed objects with every default filled in. Pure: no file or API access.
 * Errors name the object and the field, e.g. `NodePool dc1-pool: spec.replicas must be an integer ≥ 1`.
 */
import YAML from 'yaml';
import {
  API_VERSION, DEFAULTS, GROUP, KINDS, LIMITS,
  type ArchipelResource, type Bucket, type BucketSpec, type Grant, type Grid, type GridSpec, type Kind, type NodePool,
  type NodePoolSpec, type ObjectMeta, type ReplicationPolicyResource, type ReplicationPolicySpec, type Site, type SiteSpec,
} from '../api/types';
import { DNS_LABEL, DNS_SUBDOMAIN, FieldReader, QUANTITY, S3_BUCKET, isObj, type Obj } from './fields';

export const PARSE_LIMITS = { maxBytes: 1024 * 1024, maxDocuments: 1000 } as const;

export interface ParsedResources {
  grids: Grid[];
  sites: Site[];
  pools: NodePool[];
  policies: ReplicationPolicyResource[];
  buckets: Bucket[];
  /** Readable problems; an object with an error in its spec is left out of the lists above. */
  errors: string[];
  /** Documents that are not Archipel resources (a Secret, say), skipped on purpose. */
  ignored: string[];
}

/** Parses a multi-document YAML text. Never throws on bad input: everything wrong is in `errors`. */
export function parseResources(text: string): ParsedResources {
  const out: ParsedResources = { grids: [], sites: [], pools: [], policies: [], buckets: [], errors: [], ignored: [] };
  if (Buffer.byteLength(text, 'utf8') > PARSE_LIMITS.maxBytes) {
    out.errors.push(`the file is larger than ${PARSE_LIMITS.maxBytes} bytes`);
    return out;
  }
  const docs = YAML.parseAllDocuments(text, { prettyErrors: true });
  if (!Array.isArray(docs)) { out.errors.push('not a YAML document stream'); return out; } // EmptyStream
  if (docs.length > PARSE_LIMITS.maxDocuments) {
    out.errors.push(`at most ${PARSE_LIMITS.maxDocuments} documents`);
    return out;
  }
  const seen = new Set<string>();
  docs.forEach((doc, i) => {
    const where = `document ${i + 1}`;
    if (doc.errors.length > 0) {
      for (const e of doc.errors.slice(0, 5)) out.errors.push(`${where}: YAML error: ${e.message.split('\n')[0]}`);
      return;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 }); // bounds alias expansion ("billion laughs")
    } catch (e) {
      return void out.errors.push(`${where}: YAML error: ${(e as Error).message.split('\n')[0]}`);
    }
    if (value === null || value === undefined) return; // an empty document between two `---`
    const res = parseObject(value, where, out.errors, out.ignored);
    if (!res) return;
    const id = `${res.kind}/${res.metadata.namespace ?? ''}/${res.metadata.name}`;
    if (seen.has(id)) return void out.errors.push(`${res.kind} ${res.metadata.name}: defined twice`);
    seen.add(id);
    addTo(out, res);
  });
  return out;
}

export function addTo(out: ParsedResources, res: ArchipelResource): void {
  switch (res.kind) {
    case 'Grid': out.grids.push(res); break;
    case 'Site': out.sites.push(res); break;
    case 'NodePool': out.pools.push(res); break;
    case 'ReplicationPolicy': out.policies.push(res); break;
    case 'Bucket': out.buckets.push(res); break;
  }
}

/**
 * One object (a YAML document or an informer's object) into a typed resource with defaults, or
 * undefined with the reasons appended to `errors` (or to `ignored` if it is not ours).
 */
export function parseObject(value: unknown, where: string, errors: string[], ignored: string[] = []): ArchipelResource | undefined {
  if (!isObj(value)) return void errors.push(`${where}: must be a mapping with apiVersion, kind, metadata and spec`);
  const { apiVersion, kind } = value;
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') {
    return void errors.push(`${where}: apiVersion and kind are required`);
  }
  if (!apiVersion.startsWith(`${GROUP}/`)) return void ignored.push(`${where}: ${apiVersion} ${kind}`);
  if (apiVersion !== API_VERSION) return void errors.push(`${where}: apiVersion ${apiVersion} is not supported (use ${API_VERSION})`);
  if (!KINDS.includes(kind as Kind)) return void errors.push(`${where}: kind ${kind} is not one of ${KINDS.join(', ')}`);
  const meta = isObj(value.metadata) ? value.metadata : {};
  const name = typeof meta.name === 'string' ? meta.name : '';
  const nameOk = kind === 'Bucket' ? DNS_SUBDOMAIN.test(name) : DNS_LABEL.test(name);
  if (!nameOk) return void errors.push(`${where}: ${kind} metadata.name must be a DNS ${kind === 'Bucket' ? 'subdomain' : 'label'} (got ${JSON.stringify(name)})`);
  const before = errors.length;
  const r = new FieldReader(`${kind} ${name}`, errors);
  const metadata = readMeta(meta, name);
  if (value.spec !== undefined && value.spec !== null && !isObj(value.spec)) { r.problem('spec', 'must be an object'); return undefined; }
  const spec = (value.spec ?? {}) as Obj;
  const status = isObj(value.status) ? value.status : undefined;
  const common = { apiVersion: API_VERSION, metadata, ...(status ? { status } : {}) } as const;
  let res: ArchipelResource;
  switch (kind as Kind) {
    case 'Grid': res = { ...common, kind: 'Grid', spec: gridSpec(r, spec) } as Grid; break;
    case 'Site': res = { ...common, kind: 'Site', spec: siteSpec(r, spec) } as Site; break;
    case 'NodePool': res = { ...common, kind: 'NodePool', spec: poolSpec(r, spec) } as NodePool; break;
    case 'ReplicationPolicy': res = { ...common, kind: 'ReplicationPolicy', spec: policySpec(r, spec) } as ReplicationPolicyResource; break;
    case 'Bucket': res = { ...common, kind: 'Bucket', spec: bucketSpec(r, spec, name) } as Bucket; break;
  }
  return errors.length === before ? res : undefined;
}

function readMeta(meta: Obj, name: string): ObjectMeta {
  const out: ObjectMeta = { name };
  for (const k of ['namespace', 'uid', 'resourceVersion', 'creationTimestamp', 'deletionTimestamp'] as const) {
    if (typeof meta[k] === 'string') out[k] = meta[k] as string;
  }
  if (typeof meta.generation === 'number') out.generation = meta.generation;
  if (isObj(meta.labels)) out.labels = meta.labels as Record<string, string>;
  if (isObj(meta.annotations)) out.annotations = meta.annotations as Record<string, string>;
  if (Array.isArray(meta.finalizers)) out.finalizers = meta.finalizers.filter((f): f is string => typeof f === 'string');
  return out;
}

function port(r: FieldReader, o: Obj, path: string, def: number): number {
  return r.int(o, 'port', `${path}.port`, { def, min: 1, max: 65535 }) ?? def;
}

function gridSpec(r: FieldReader, spec: Obj): GridSpec {
  r.known(spec, 'spec', ['image', 'partitionCount', 'defaultPolicy', 's3', 'admin', 'rpc', 'encryption', 'audit']);
  const s3 = r.obj(spec, 's3', 'spec.s3');
  const admin = r.obj(spec, 'admin', 'spec.admin');
  const rpc = r.obj(spec, 'rpc', 'spec.rpc');
  const enc = r.obj(spec, 'encryption', 'spec.encryption');
  const audit = r.obj(spec, 'audit', 'spec.audit');
  r.known(s3, 'spec.s3', ['port', 'region', 'tls']);
  r.known(admin, 'spec.admin', ['port', 'secretName']);
  r.known(rpc, 'spec.rpc', ['port']);
  r.known(enc, 'spec.encryption', ['enabled', 'keySecretName']);
  r.known(audit, 'spec.audit', ['enabled', 'retentionDays']);
  const tls = s3.tls === undefined ? undefined : r.obj(s3, 'tls', 'spec.s3.tls');
  const out: GridSpec = {
    image: r.str(spec, 'image', 'spec.image', { def: DEFAULTS.image }) ?? DEFAULTS.image,
    partitionCount: r.int(spec, 'partitionCount', 'spec.partitionCount', { def: DEFAULTS.partitionCount, min: 1, max: LIMITS.maxPartitionCount }) ?? DEFAULTS.partitionCount,
    defaultPolicy: r.str(spec, 'defaultPolicy', 'spec.defaultPolicy', { def: DEFAULTS.defaultPolicy, pattern: DNS_LABEL, patternText: 'a DNS label' }) ?? DEFAULTS.defaultPolicy,
    s3: { port: port(r, s3, 'spec.s3', DEFAULTS.s3Port), region: r.str(s3, 'region', 'spec.s3.region', { def: DEFAULTS.region, pattern: /^[a-z0-9-]+$/, patternText: 'a region name' }) ?? DEFAULTS.region },
    admin: { port: port(r, admin, 'spec.admin', DEFAULTS.adminPort) },
    rpc: { port: port(r, rpc, 'spec.rpc', DEFAULTS.rpcPort) },
    encryption: { enabled: r.bool(enc, 'enabled', 'spec.encryption.enabled', DEFAULTS.encryptionEnabled) },
    audit: { enabled: r.bool(audit, 'enabled', 'spec.audit.enabled', DEFAULTS.auditEnabled) },
  };
  if (tls) out.s3.tls = { secretName: r.str(tls, 'secretName', 'spec.s3.tls.secretName', { required: true, pattern: DNS_SUBDOMAIN, patternText: 'a Secret name' }) ?? '' };
  const adminSecret = r.str(admin, 'secretName', 'spec.admin.secretName', { pattern: DNS_SUBDOMAIN, patternText: 'a Secret name' });
  if (adminSecret) out.admin.secretName = adminSecret;
  const keySecret = r.str(enc, 'keySecretName', 'spec.encryption.keySecretName', { pattern: DNS_SUBDOMAIN, patternText: 'a Secret name' });
  if (keySecret) out.encryption.keySecretName = keySecret;
  if (out.encryption.enabled && !keySecret) r.problem('spec.encryption.keySecretName', 'is required when encryption is enabled');
  const retention = r.int(audit, 'retentionDays', 'spec.audit.retentionDays', { min: 1, max: 36500 });
  if (retention !== undefined) out.audit.retentionDays = retention;
  const ports = [['spec.s3.port', out.s3.port], ['spec.admin.port', out.admin.port], ['spec.rpc.port', out.rpc.port]] as const;
  for (let i = 0; i < ports.length; i++) {
    for (let j = i + 1; j < ports.length; j++) if (ports[i][1] === ports[j][1]) r.problem(ports[j][0], `must differ from ${ports[i][0]} (both ${ports[i][1]})`);
  }
  return out;
}

function siteSpec(r: FieldReader, spec: Obj): SiteSpec {
  r.known(spec, 'spec', ['grid', 'role', 'zone', 'nodeSelector', 'state']);
  const out: SiteSpec = {
    grid: r.ref(spec, 'grid', 'spec.grid'),
    role: r.enumOf(spec, 'role', 'spec.role', ['primary', 'fallback'], DEFAULTS.siteRole),
    state: r.enumOf(spec, 'state', 'spec.state', ['Active', 'Failed'], DEFAULTS.siteState),
  };
  const zone = r.str(spec, 'zone', 'spec.zone', { maxLength: 63 });
  if (zone) out.zone = zone;
  const sel = r.stringMap(spec, 'nodeSelector', 'spec.nodeSelector');
  if (sel) out.nodeSelector = sel;
  return out;
}

function poolSpec(r: FieldReader, spec: Obj): NodePoolSpec {
  r.known(spec, 'spec', ['site', 'replicas', 'storage', 'resources', 'image']);
  const storage = r.obj(spec, 'storage', 'spec.storage');
  r.known(storage, 'spec.storage', ['size', 'storageClassName']);
  const out: NodePoolSpec = {
    site: r.ref(spec, 'site', 'spec.site'),
    replicas: r.int(spec, 'replicas', 'spec.replicas', { def: DEFAULTS.replicas, min: 1, max: LIMITS.maxReplicas }) ?? DEFAULTS.replicas,
    storage: { size: r.str(storage, 'size', 'spec.storage.size', { def: DEFAULTS.storageSize, pattern: QUANTITY, patternText: 'a quantity such as 10Gi' }) ?? DEFAULTS.storageSize },
  };
  const cls = r.str(storage, 'storageClassName', 'spec.storage.storageClassName', { pattern: DNS_SUBDOMAIN, patternText: 'a StorageClass name' });
  if (cls) out.storage.storageClassName = cls;
  const image = r.str(spec, 'image', 'spec.image');
  if (image) out.image = image;
  if (spec.resources !== undefined) out.resources = resources(r, r.obj(spec, 'resources', 'spec.resources'));
  return out;
}

function resources(r: FieldReader, res: Obj): NonNullable<NodePoolSpec['resources']> {
  r.known(res, 'spec.resources', ['requests', 'limits']);
  const out: NonNullable<NodePoolSpec['resources']> = {};
  for (const part of ['requests', 'limits'] as const) {
    if (res[part] === undefined) continue;
    const o = r.obj(res, part, `spec.resources.${part}`);
    r.known(o, `spec.resources.${part}`, ['cpu', 'memory']);
    const cpu = r.str(o, 'cpu', `spec.resources.${part}.cpu`, { pattern: QUANTITY, patternText: 'a quantity such as 500m' });
    const memory = r.str(o, 'memory', `spec.resources.${part}.memory`, { pattern: QUANTITY, patternText: 'a quantity such as 512Mi' });
    out[part] = { ...(cpu ? { cpu } : {}), ...(memory ? { memory } : {}) };
  }
  return out;
}

const GLOB = /^[a-z0-9.*?-]{1,63}$/;

function policySpec(r: FieldReader, spec: Obj): ReplicationPolicySpec {
  r.known(spec, 'spec', ['grid', 'priority', 'match', 'rules', 'ingest']);
  const match = r.obj(spec, 'match', 'spec.match');
  r.known(match, 'spec.match', ['buckets', 'prefixes']);
  const out: ReplicationPolicySpec = {
    grid: r.ref(spec, 'grid', 'spec.grid'),
    priority: r.int(spec, 'priority', 'spec.priority', { def: DEFAULTS.priority, min: 0, max: LIMITS.maxPriority }) ?? DEFAULTS.priority,
    match: {
      buckets: r.strList(match, 'buckets', 'spec.match.buckets', { def: ['*'], max: LIMITS.maxGlobs, pattern: GLOB, patternText: 'a bucket name or glob (a-z 0-9 . - * ?)' }) ?? ['*'],
    },
    rules: [],
    ingest: r.enumOf(spec, 'ingest', 'spec.ingest', ['strict', 'balanced', 'dualCommit'], DEFAULTS.ingest),
  };
  const prefixes = r.strList(match, 'prefixes', 'spec.match.prefixes', { max: LIMITS.maxGlobs });
  if (prefixes && prefixes.length > 0) out.match.prefixes = prefixes;
  const rules = spec.rules;
  if (!Array.isArray(rules) || rules.length === 0) r.problem('spec.rules', 'must list at least one rule ({ site, copies })');
  else if (rules.length > LIMITS.maxRules) r.problem('spec.rules', `must have at most ${LIMITS.maxRules} rules`);
  else {
    rules.forEach((rule, i) => {
      const path = `spec.rules[${i}]`;
      if (!isObj(rule)) return void r.problem(path, 'must be an object with site and copies');
      r.known(rule, path, ['site', 'copies']);
      const site = r.ref(rule, 'site', `${path}.site`);
      const copies = r.int(rule, 'copies', `${path}.copies`, { def: DEFAULTS.copies, min: 1, max: LIMITS.maxCopies }) ?? DEFAULTS.copies;
      if (site && out.rules.some((x) => x.site === site)) r.problem(`${path}.site`, `names site ${site} a second time`);
      out.rules.push({ site, copies });
    });
  }
  const total = out.rules.reduce((s, x) => s + x.copies, 0);
  if (out.ingest === 'dualCommit' && out.rules.length > 0 && total < 2) r.problem('spec.ingest', 'dualCommit needs at least 2 copies in all');
  return out;
}

function bucketSpec(r: FieldReader, spec: Obj, name: string): BucketSpec {
  r.known(spec, 'spec', ['grid', 'bucketName', 'policy', 'versioning', 'objectLock', 'quotaBytes', 'deletionPolicy', 'secretName', 'grants']);
  const bucketName = r.str(spec, 'bucketName', 'spec.bucketName', { def: name, pattern: S3_BUCKET, patternText: 'an S3 bucket name (3-63 of a-z 0-9 . -)' }) ?? name;
  if (spec.bucketName === undefined && !S3_BUCKET.test(name)) r.problem('spec.bucketName', `is required: metadata.name ${name} is not a valid S3 bucket name`);
  const out: BucketSpec = {
    grid: r.ref(spec, 'grid', 'spec.grid'),
    bucketName,
    versioning: r.enumOf(spec, 'versioning', 'spec.versioning', ['Enabled', 'Suspended', 'Disabled'], DEFAULTS.versioning),
    deletionPolicy: r.enumOf(spec, 'deletionPolicy', 'spec.deletionPolicy', ['Retain', 'Delete'], DEFAULTS.deletionPolicy),
    secretName: r.str(spec, 'secretName', 'spec.secretName', { def: `${bucketName}-s3`, pattern: DNS_SUBDOMAIN, patternText: 'a Secret name' }) ?? `${bucketName}-s3`,
    grants: (r.strList(spec, 'grants', 'spec.grants', { def: ['owner'], max: 3, minItems: 1, pattern: /^(read|write|owner)$/, patternText: 'read, write or owner' }) ?? ['owner']) as Grant[],
  };
  if (spec.policy !== undefined) out.policy = r.ref(spec, 'policy', 'spec.policy');
  const quota = r.int(spec, 'quotaBytes', 'spec.quotaBytes', { min: 0, max: LIMITS.maxQuotaBytes });
  if (quota !== undefined) out.quotaBytes = quota;
  if (spec.objectLock !== undefined) out.objectLock = objectLock(r, r.obj(spec, 'objectLock', 'spec.objectLock'), out);
  return out;
}

function objectLock(r: FieldReader, lock: Obj, bucket: BucketSpec): NonNullable<BucketSpec['objectLock']> {
  r.known(lock, 'spec.objectLock', ['enabled', 'defaultRetention']);
  const out: NonNullable<BucketSpec['objectLock']> = { enabled: r.bool(lock, 'enabled', 'spec.objectLock.enabled', false) };
  if (out.enabled && bucket.versioning !== 'Enabled') r.problem('spec.objectLock.enabled', 'requires spec.versioning: Enabled');
  if (lock.defaultRetention === undefined) return out;
  const ret = r.obj(lock, 'defaultRetention', 'spec.objectLock.defaultRetention');
  const path = 'spec.objectLock.defaultRetention';
  r.known(ret, path, ['mode', 'days', 'years']);
  if (!out.enabled) r.problem(path, 'requires spec.objectLock.enabled: true');
  if (ret.mode === undefined) r.problem(`${path}.mode`, 'is required (GOVERNANCE or COMPLIANCE)');
  const mode = r.enumOf(ret, 'mode', `${path}.mode`, ['GOVERNANCE', 'COMPLIANCE'], 'GOVERNANCE');
  const days = r.int(ret, 'days', `${path}.days`, { min: 1, max: 36500 });
  const years = r.int(ret, 'years', `${path}.years`, { min: 1, max: 100 });
  if ((days === undefined) === (years === undefined)) r.problem(path, 'must set days or years, not both and not neither');
  out.defaultRetention = { mode, ...(days !== undefined ? { days } : {}), ...(years !== undefined ? { years } : {}) };
  return out;
}
