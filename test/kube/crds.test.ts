// The custom resource definitions of crds/ and their samples: checked against operator/src/api/types.ts
// and the local runtime's parser without a cluster, then installed on a real API server, where the
// samples must apply and bad specs must be refused with a message that names the field.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import YAML from 'yaml';
import { DEFAULTS, GROUP, KINDS, LIMITS, VERSION, type Kind } from '../../operator/src/api/types';
import { parseResources, type ParsedResources } from '../../operator/src/planner/parse';
import { skipWithoutKubeBinaries } from './binaries';
import { ControlPlane } from './control-plane';
import { KubeApiError, KubeObject } from './kube-client';
import { aliveGroups, describeGroup } from './leak-check';

/** The repository root, found upwards from the compiled test (dist/ or .build/<name>/). */
function repoRoot(): string {
  for (let dir = __dirname, i = 0; i < 8; dir = path.dirname(dir), i++) {
    if (fs.existsSync(path.join(dir, 'crds')) && fs.existsSync(path.join(dir, 'examples', 'three-sites.yaml'))) return dir;
  }
  throw new Error('crds/ not found above the compiled test');
}

const root = repoRoot();
const crdsDir = path.join(root, 'crds');
const samplesDir = path.join(crdsDir, 'samples');
const examplePath = path.join(root, 'examples', 'three-sites.yaml');

interface Schema {
  type?: string;
  required?: string[];
  properties?: Record<string, Schema>;
  items?: Schema;
  default?: unknown;
  minimum?: number;
  maximum?: number;
  maxItems?: number;
  enum?: unknown[];
  'x-kubernetes-validations'?: { rule: string; message?: string }[];
}

interface PrinterColumn { name: string; type: string; jsonPath: string; priority?: number }

interface Crd {
  metadata: { name: string };
  spec: {
    group: string;
    scope: string;
    names: { kind: string; plural: string; singular: string; shortNames?: string[]; categories?: string[] };
    versions: {
      name: string;
      served: boolean;
      storage: boolean;
      subresources?: { status?: object; scale?: { specReplicasPath: string; statusReplicasPath: string; labelSelectorPath?: string } };
      additionalPrinterColumns?: PrinterColumn[];
      schema: { openAPIV3Schema: Schema };
    }[];
  };
}

function loadCrds(): Map<string, Crd> {
  const out = new Map<string, Crd>();
  for (const file of fs.readdirSync(crdsDir).filter((f) => f.endsWith('.yaml')).sort()) {
    const crd = YAML.parse(fs.readFileSync(path.join(crdsDir, file), 'utf8')) as Crd;
    assert.equal(out.has(crd.spec.names.kind), false, `${file}: a second CRD for ${crd.spec.names.kind}`);
    out.set(crd.spec.names.kind, crd);
  }
  return out;
}

/** The sub-schema at `spec.rules[].copies` or `status.conditions[?(@.type=="Ready")].reason`. */
function schemaAt(schema: Schema, fieldPath: string): Schema | undefined {
  let at: Schema | undefined = schema;
  for (const part of fieldPath.replace(/^\./, '').replace(/\[\?\(.*?\)\]/g, '[]').split('.')) {
    const list = part.endsWith('[]');
    at = at?.properties?.[list ? part.slice(0, -2) : part];
    if (list) at = at?.items;
  }
  return at;
}

function docsOf(file: string): KubeObject[] {
  return YAML.parseAllDocuments(fs.readFileSync(file, 'utf8')).map((d) => d.toJS() as KubeObject).filter(Boolean);
}

function sampleFiles(): string[] {
  return fs.readdirSync(samplesDir).filter((f) => f.endsWith('.yaml')).sort().map((f) => path.join(samplesDir, f));
}

function parsedObjects(parsed: ParsedResources): { kind: Kind; name: string; spec: object }[] {
  return [...parsed.grids, ...parsed.sites, ...parsed.pools, ...parsed.policies, ...parsed.buckets]
    .map((o) => ({ kind: o.kind, name: o.metadata.name, spec: o.spec }));
}

const crds = loadCrds();
const schemaOf = (kind: Kind): Schema => crds.get(kind)!.spec.versions[0].schema.openAPIV3Schema;

describe('custom resource definitions (crds/): agreement with the API types, no cluster', () => {
  it('has one CRD per kind: storage.archipel.io/v1alpha1, served and stored, namespaced, in the archipel category', () => {
    assert.deepEqual([...crds.keys()].sort(), [...KINDS].sort());
    const shortNames = new Set<string>();
    for (const kind of KINDS) {
      const crd = crds.get(kind)!;
      assert.equal(crd.spec.group, GROUP);
      assert.equal(crd.metadata.name, `${crd.spec.names.plural}.${GROUP}`);
      assert.equal(crd.spec.names.singular, kind.toLowerCase());
      assert.equal(crd.spec.scope, 'Namespaced');
      assert.deepEqual(crd.spec.names.categories, ['archipel']);
      assert.ok((crd.spec.names.shortNames ?? []).length > 0, `${kind} has a short name`);
      for (const s of crd.spec.names.shortNames ?? []) {
        assert.ok(!shortNames.has(s), `short name ${s} used twice`);
        shortNames.add(s);
      }
      assert.equal(crd.spec.versions.length, 1);
      const [v] = crd.spec.versions;
      assert.deepEqual([v.name, v.served, v.storage], [VERSION, true, true]);
      assert.deepEqual(v.subresources?.status, {}, `${kind} has the status subresource`);
      assert.deepEqual(schemaOf(kind).required, ['spec']);
    }
    assert.deepEqual(crds.get('NodePool')!.spec.versions[0].subresources?.scale, {
      specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas', labelSelectorPath: '.status.selector',
    });
  });

  it('has printer columns that name fields of the schema, with the age last', () => {
    for (const kind of KINDS) {
      const columns = crds.get(kind)!.spec.versions[0].additionalPrinterColumns ?? [];
      assert.deepEqual(columns.at(-1), { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' });
      for (const c of columns.slice(0, -1)) {
        const field = schemaAt(schemaOf(kind), c.jsonPath);
        assert.ok(field, `${kind} column ${c.name}: ${c.jsonPath} is not in the schema (the column would stay empty)`);
        const want = field.type === 'integer' ? 'integer' : field.type === 'boolean' ? 'boolean' : 'string';
        assert.equal(c.type, want, `${kind} column ${c.name} has the type of ${c.jsonPath}`);
      }
    }
    const names = (kind: Kind): string[] => crds.get(kind)!.spec.versions[0].additionalPrinterColumns!.filter((c) => !c.priority).map((c) => c.name);
    assert.deepEqual(names('NodePool'), ['Site', 'Desired', 'Ready', 'Rebalance', 'Status', 'Age']);
    assert.deepEqual(names('Grid'), ['Phase', 'Ready', 'Desired', 'Layout', 'Rebalance', 'Age']);
  });

  it('has the defaults and limits of operator/src/api/types.ts', () => {
    const defaults: [Kind, string, unknown][] = [
      ['Grid', 'spec.image', DEFAULTS.image],
      ['Grid', 'spec.partitionCount', DEFAULTS.partitionCount],
      ['Grid', 'spec.defaultPolicy', DEFAULTS.defaultPolicy],
      ['Grid', 'spec.s3.port', DEFAULTS.s3Port],
      ['Grid', 'spec.s3.region', DEFAULTS.region],
      ['Grid', 'spec.admin.port', DEFAULTS.adminPort],
      ['Grid', 'spec.rpc.port', DEFAULTS.rpcPort],
      ['Grid', 'spec.encryption.enabled', DEFAULTS.encryptionEnabled],
      ['Grid', 'spec.audit.enabled', DEFAULTS.auditEnabled],
      ['Site', 'spec.role', DEFAULTS.siteRole],
      ['Site', 'spec.state', DEFAULTS.siteState],
      ['NodePool', 'spec.replicas', DEFAULTS.replicas],
      ['NodePool', 'spec.storage.size', DEFAULTS.storageSize],
      ['ReplicationPolicy', 'spec.priority', DEFAULTS.priority],
      ['ReplicationPolicy', 'spec.match.buckets', ['*']],
      ['ReplicationPolicy', 'spec.rules[].copies', DEFAULTS.copies],
      ['ReplicationPolicy', 'spec.ingest', DEFAULTS.ingest],
      ['Bucket', 'spec.versioning', DEFAULTS.versioning],
      ['Bucket', 'spec.deletionPolicy', DEFAULTS.deletionPolicy],
      ['Bucket', 'spec.grants', ['owner']],
    ];
    for (const [kind, at, want] of defaults) assert.deepEqual(schemaAt(schemaOf(kind), at)?.default, want, `${kind} ${at} default`);
    const limits: [Kind, string, 'maximum' | 'maxItems', number][] = [
      ['Grid', 'spec.partitionCount', 'maximum', LIMITS.maxPartitionCount],
      ['NodePool', 'spec.replicas', 'maximum', LIMITS.maxReplicas],
      ['ReplicationPolicy', 'spec.rules', 'maxItems', LIMITS.maxRules],
      ['ReplicationPolicy', 'spec.rules[].copies', 'maximum', LIMITS.maxCopies],
      ['ReplicationPolicy', 'spec.match.buckets', 'maxItems', LIMITS.maxGlobs],
      ['ReplicationPolicy', 'spec.match.prefixes', 'maxItems', LIMITS.maxGlobs],
      ['ReplicationPolicy', 'spec.priority', 'maximum', LIMITS.maxPriority],
      ['Bucket', 'spec.quotaBytes', 'maximum', LIMITS.maxQuotaBytes],
    ];
    for (const [kind, at, key, want] of limits) assert.equal(schemaAt(schemaOf(kind), at)?.[key], want, `${kind} ${at} ${key}`);
    assert.equal(schemaAt(schemaOf('NodePool'), 'spec.replicas')?.minimum, 1);
    // The port rule reads an absent port as its default (a schema default is validated before the
    // nested defaults are filled in), so it must name the same defaults.
    const portRule = schemaAt(schemaOf('Grid'), 'spec')!['x-kubernetes-validations']![0].rule;
    for (const port of [DEFAULTS.s3Port, DEFAULTS.adminPort, DEFAULTS.rpcPort]) assert.ok(portRule.includes(`orValue(${port})`), portRule);
  });

  it('has samples that are the grid of examples/three-sites.yaml plus a Bucket, which the local runtime reads without an error', () => {
    const samples = sampleFiles().flatMap(docsOf);
    assert.deepEqual(samples.filter((o) => o.kind !== 'Bucket'), docsOf(examplePath));
    const parsed = parseResources(sampleFiles().map((f) => fs.readFileSync(f, 'utf8')).join('\n---\n'));
    assert.deepEqual(parsed.errors, []);
    assert.deepEqual([parsed.grids.length, parsed.sites.length, parsed.pools.length, parsed.policies.length, parsed.buckets.length], [1, 3, 3, 1, 1]);
  });
});

describe('custom resource definitions (crds/) on a real API server', function () {
  this.timeout(300_000);
  let cp: ControlPlane | undefined;
  let manifestsDir = '';
  let written = 0;
  const pgids: number[] = [];
  const ns = 'default';

  const kubectl = (args: string[]): Promise<string> => cp!.kubectl(args);
  const plural = (kind: string): string => crds.get(kind)!.spec.names.plural;
  const objectPath = (kind: string, name: string, namespace = ns): string =>
    `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${plural(kind)}/${name}`;
  const getObject = (kind: string, name: string, namespace = ns): Promise<KubeObject | undefined> =>
    cp!.client.getOptional(objectPath(kind, name, namespace));
  /** Writes `objects` as one multi-document YAML file for kubectl. */
  const manifest = (...objects: object[]): string => {
    const file = path.join(manifestsDir, `m${++written}.yaml`);
    fs.writeFileSync(file, objects.map((o) => YAML.stringify(o)).join('---\n'));
    return file;
  };
  const applyFile = (file: string, namespace = ns): Promise<string> =>
    kubectl(['apply', '--server-side', '--namespace', namespace, '-f', file]);
  const obj = (kind: Kind, name: string, spec?: object): KubeObject =>
    ({ apiVersion: `${GROUP}/${VERSION}`, kind, metadata: { name }, ...(spec === undefined ? {} : { spec }) });
  /** Server specs of the objects the local runtime's parser reads from `text`, parser spec alongside. */
  const serverAndParserSpecs = async (text: string, namespace: string) => {
    const parsed = parseResources(text);
    assert.deepEqual(parsed.errors, []);
    return Promise.all(parsedObjects(parsed).map(async (o) => ({
      ...o, server: (await getObject(o.kind, o.name, namespace))?.spec as object | undefined,
    })));
  };

  /**
   * Applies `object` and expects the API server to refuse it with every message in `expect`, and
   * the stored object (if any) to be left as it was.
   */
  const refuse = async (object: KubeObject, expect: RegExp[]): Promise<void> => {
    const before = await getObject(object.kind!, object.metadata.name);
    const file = manifest(object);
    await assert.rejects(kubectl(['apply', '--server-side', '--force-conflicts', '-f', file]), (err: Error) => {
      assert.ok(err.message.includes(object.metadata.name), `the message names the object: ${err.message}`);
      for (const re of expect) assert.match(err.message, re);
      return true;
    });
    const after = await getObject(object.kind!, object.metadata.name);
    assert.equal(after?.metadata.resourceVersion, before?.metadata.resourceVersion, 'a refused apply changes nothing');
  };

  before(async function () {
    skipWithoutKubeBinaries(this);
    cp = await ControlPlane.start({ startTimeoutMs: 60_000 });
    pgids.push(...cp.pids());
    manifestsDir = path.join(cp.dir, 'manifests');
    fs.mkdirSync(manifestsDir);
  });

  after(async () => {
    await cp?.stop();
    const left = aliveGroups(pgids);
    assert.deepEqual(left.map(describeGroup), [], 'no control-plane process is left');
  });

  it('installs every CRD with server-side apply, and each becomes Established', async () => {
    const out = await applyFile(crdsDir);
    for (const crd of crds.values()) assert.match(out, new RegExp(`customresourcedefinition.apiextensions.k8s.io/${crd.metadata.name} serverside-applied`));
    // The README's command: every CRD carries the label.
    const waited = await kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd', '-l', 'app.kubernetes.io/part-of=archipel']);
    assert.equal(waited.trim().split('\n').length, crds.size, waited);
    for (const crd of crds.values()) {
      const live = await cp!.client.get(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`);
      const status = (type: string): string | undefined => live.status.conditions.find((c: { type: string }) => c.type === type)?.status;
      assert.equal(status('NamesAccepted'), 'True', crd.metadata.name);
      assert.equal(status('Established'), 'True', crd.metadata.name);
      assert.equal(status('NonStructuralSchema'), undefined, `${crd.metadata.name} has a structural schema`);
    }
  });

  it('applies every sample, and the API server fills in the same defaults as the local runtime', async () => {
    const out = await applyFile(samplesDir);
    const text = sampleFiles().map((f) => fs.readFileSync(f, 'utf8')).join('\n---\n');
    const objects = await serverAndParserSpecs(text, ns);
    assert.equal(objects.length, 9);
    for (const o of objects) {
      assert.match(out, new RegExp(`${o.kind.toLowerCase()}.${GROUP}/${o.name} serverside-applied`));
      assert.deepEqual(o.server, o.spec, `${o.kind} ${o.name}`);
    }
  });

  it('accepts examples/three-sites.yaml as is, and minimal objects with every default filled in', async () => {
    await kubectl(['create', 'namespace', 'examples']);
    await applyFile(examplePath, 'examples');
    for (const o of await serverAndParserSpecs(fs.readFileSync(examplePath, 'utf8'), 'examples')) {
      assert.deepEqual(o.server, o.spec, `${o.kind} ${o.name}`);
    }
    // Only the required fields. A Bucket's bucketName and secretName default to other fields'
    // values, which a schema default cannot do: the operator fills them in (as the parser does).
    const minimal = [
      obj('Grid', 'tiny'),
      obj('Site', 'tiny-dc', { grid: 'tiny' }),
      obj('NodePool', 'tiny-pool', { site: 'tiny-dc' }),
      obj('ReplicationPolicy', 'tiny-policy', { grid: 'tiny', rules: [{ site: 'tiny-dc' }] }),
      obj('Bucket', 'scans', { grid: 'tiny' }),
    ];
    await kubectl(['create', 'namespace', 'minimal']);
    await applyFile(manifest(...minimal), 'minimal');
    for (const o of await serverAndParserSpecs(minimal.map((m) => YAML.stringify(m)).join('---\n'), 'minimal')) {
      const want: Record<string, unknown> = { ...o.spec };
      if (o.kind === 'Bucket') {
        assert.deepEqual([want.bucketName, want.secretName], ['scans', 'scans-s3']);
        delete want.bucketName;
        delete want.secretName;
      }
      assert.deepEqual(o.server, want, `${o.kind} ${o.name}`);
    }
  });

  it('lists the sample objects with `kubectl get archipel`, and each kind by its short name', async () => {
    const want = sampleFiles().flatMap(docsOf).map((o) => `${o.kind!.toLowerCase()}.${GROUP}/${o.metadata.name}`).sort();
    const names = (await kubectl(['get', 'archipel', '-o', 'name'])).trim().split('\n').sort();
    assert.deepEqual(names, want);
    const shortNames = [...crds.values()].map((c) => c.spec.names.shortNames![0]).join(',');
    assert.deepEqual((await kubectl(['get', shortNames, '-o', 'name'])).trim().split('\n').sort(), want);
    const table = await kubectl(['get', 'archipel']);
    assert.match(table, /NAME\s+SITE\s+DESIRED\s+READY\s+REBALANCE\s+STATUS\s+AGE/);
    assert.match(table, /nodepool\.storage\.archipel\.io\/dc1-pool\s+dc1\s+2\s/);
    assert.match(table, /site\.storage\.archipel\.io\/dc3\s+demo\s+fallback\s/);
    assert.match(table, /bucket\.storage\.archipel\.io\/records\s+records\s+demo\s+true\s/);
  });

  describe('refuses a bad spec with a message that names the field, and changes nothing', () => {
    const lockedRecords = { grid: 'demo', bucketName: 'records', policy: 'default', versioning: 'Enabled',
      objectLock: { enabled: true, defaultRetention: { mode: 'COMPLIANCE', days: 30 } }, quotaBytes: 107374182400,
      deletionPolicy: 'Retain', secretName: 'records-s3', grants: ['write'] };
    const cases: [string, () => KubeObject, RegExp[]][] = [
      ['a value outside an enum (Site role)', () => obj('Site', 'dc4', { grid: 'demo', role: 'secondary' }),
        [/spec\.role: Unsupported value: "secondary": supported values: "primary", "fallback"/]],
      ['a value outside an enum (policy ingest)', () => obj('ReplicationPolicy', 'quorum', { grid: 'demo', rules: [{ site: 'dc1' }], ingest: 'quorum' }),
        [/spec\.ingest: Unsupported value: "quorum": supported values: "strict", "balanced", "dualCommit"/]],
      ['a NodePool with replicas below 1', () => obj('NodePool', 'empty-pool', { site: 'dc1', replicas: 0 }),
        [/spec\.replicas: Invalid value: 0: spec\.replicas in body should be greater than or equal to 1/]],
      ['a NodePool with more replicas than the limit', () => obj('NodePool', 'huge-pool', { site: 'dc1', replicas: LIMITS.maxReplicas + 1 }),
        [new RegExp(`spec\\.replicas: Invalid value: ${LIMITS.maxReplicas + 1}: spec\\.replicas in body should be less than or equal to ${LIMITS.maxReplicas}`)]],
      ['a retention of both days and years', () => obj('Bucket', 'archive', { grid: 'demo', versioning: 'Enabled',
        objectLock: { enabled: true, defaultRetention: { mode: 'COMPLIANCE', days: 30, years: 1 } } }),
        [/spec\.objectLock\.defaultRetention: Invalid value: .*spec\.objectLock\.defaultRetention must set days or years, not both/]],
      ['a retention without object lock', () => obj('Bucket', 'unlocked', { grid: 'demo', versioning: 'Enabled',
        objectLock: { enabled: false, defaultRetention: { mode: 'GOVERNANCE', days: 1 } } }),
        [/spec\.objectLock\.defaultRetention: Invalid value: .*requires spec\.objectLock\.enabled: true/]],
      ['object lock without versioning Enabled', () => obj('Bucket', 'locked', { grid: 'demo', objectLock: { enabled: true } }),
        [/spec\.objectLock\.enabled: Invalid value: .*spec\.objectLock\.enabled requires spec\.versioning: Enabled/]],
      ['a bucket name that does not match the S3 pattern', () => obj('Bucket', 'patient-records', { grid: 'demo', bucketName: 'Patient_Records' }),
        [/spec\.bucketName: Invalid value: "Patient_Records": spec\.bucketName in body should match '\^\[a-z0-9\]/]],
      ['a bucket name S3 forbids (two dots in a row)', () => obj('Bucket', 'dots', { grid: 'demo', bucketName: 'my..records' }),
        [/spec\.bucketName: Invalid value: "my\.\.records": spec\.bucketName must be an S3 bucket name: no '\.\.'/]],
      ['a Bucket named like no S3 bucket, without spec.bucketName', () => obj('Bucket', 'xn--records', { grid: 'demo' }),
        [/spec\.bucketName: Required value: spec\.bucketName is required when metadata\.name is not a valid S3 bucket name/]],
      ['a policy that names a site twice', () => obj('ReplicationPolicy', 'twice', { grid: 'demo', rules: [{ site: 'dc1' }, { site: 'dc2' }, { site: 'dc1', copies: 2 }] }),
        [/spec\.rules: Invalid value: .*spec\.rules must name each site at most once/]],
      ['dualCommit with a single copy', () => obj('ReplicationPolicy', 'single', { grid: 'demo', rules: [{ site: 'dc1' }], ingest: 'dualCommit' }),
        [/spec\.ingest: Invalid value: .*spec\.ingest dualCommit needs at least 2 copies in all/]],
      ['a policy without rules', () => obj('ReplicationPolicy', 'none', { grid: 'demo', rules: [] }),
        [/spec\.rules: Invalid value: .*should have at least 1 items/]],
      ['a Site without its grid', () => obj('Site', 'orphan', { role: 'primary' }),
        [/spec\.grid: Required value/]],
      ['a name that is not a DNS label', () => obj('Site', 'dc.4', { grid: 'demo' }),
        [/metadata\.name: Invalid value: "dc\.4": metadata\.name in body should match/]],
      ['a storage size that is not a quantity', () => obj('NodePool', 'gb-pool', { site: 'dc1', storage: { size: '10GB' } }),
        [/spec\.storage\.size: Invalid value: "10GB": spec\.storage\.size in body should match/]],
      ['limits below requests', () => obj('NodePool', 'tight-pool', { site: 'dc1', resources: { requests: { cpu: '2', memory: '1Gi' }, limits: { cpu: '2', memory: '512Mi' } } }),
        [/spec\.resources\.limits\.memory: Invalid value: .*spec\.resources\.limits\.memory must be at least spec\.resources\.requests\.memory/]],
      ['a misspelt field', () => obj('NodePool', 'typo-pool', { site: 'dc1', replica: 2 }),
        [/\.spec\.replica: field not declared in schema/]],
      ['two Grid ports that are the same', () => obj('Grid', 'clash', { s3: { port: DEFAULTS.adminPort } }),
        [/spec: Invalid value: .*spec\.s3\.port, spec\.admin\.port and spec\.rpc\.port must be three different ports/]],
      ['encryption without a key', () => obj('Grid', 'sealed', { encryption: { enabled: true } }),
        [/spec\.encryption\.keySecretName: Required value: spec\.encryption\.keySecretName is required when encryption is enabled/]],
      // Immutable fields: the sample objects exist, these change them.
      ["a change of a NodePool's site", () => obj('NodePool', 'dc2-pool', { site: 'dc1', replicas: 2, storage: { size: '10Gi' } }),
        [/spec\.site: Forbidden: spec\.site is immutable/]],
      ["turning a Bucket's object lock off", () => obj('Bucket', 'records', { ...lockedRecords, objectLock: { enabled: false } }),
        [/spec\.objectLock\.enabled: Forbidden: spec\.objectLock\.enabled is immutable: object lock can only be chosen when the bucket is created/]],
      ["removing a Bucket's object lock", () => obj('Bucket', 'records', { ...lockedRecords, objectLock: undefined }),
        [/spec\.objectLock\.enabled: Forbidden: spec\.objectLock\.enabled is immutable/]],
      ["renaming a Bucket's S3 bucket", () => obj('Bucket', 'records', { ...lockedRecords, bucketName: 'records-2' }),
        [/spec\.bucketName: Forbidden: spec\.bucketName is immutable: an S3 bucket cannot be renamed/]],
      ["a change of a Grid's partitionCount", () => obj('Grid', 'demo', { defaultPolicy: 'default', s3: { port: 9000, region: 'us-east-1' }, partitionCount: 256 }),
        [/spec\.partitionCount: Forbidden: spec\.partitionCount is immutable/]],
      ["turning a versioned Bucket's versioning back to Disabled", () => obj('Bucket', 'scans', { grid: 'demo', versioning: 'Disabled' }),
        [/spec\.versioning: Invalid value: "Disabled": spec\.versioning cannot go back to Disabled once Enabled or Suspended/]],
    ];
    before(async function () {
      if (!cp) this.skip();
      // A versioned Bucket without object lock, for the versioning case.
      await applyFile(manifest(obj('Bucket', 'scans', { grid: 'demo', versioning: 'Suspended' })));
    });
    for (const [what, object, expect] of cases) {
      it(`refuses ${what}`, async () => {
        const o = object();
        if (o.spec) o.spec = JSON.parse(JSON.stringify(o.spec)); // drops the undefined fields
        await refuse(o, expect);
      });
    }
  });

  it('writes status only through the status subresource, on every kind, and shows it in the printer columns', async () => {
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const ready = (status: string, reason: string) => [{ type: 'Ready', status, reason, message: 'set by the test', lastTransitionTime: now }];
    const rebalance = { partitionsToMove: 100, partitionsMoved: 42, bytesToMove: 1000, bytesMoved: 420, progress: '42%' };
    for (const o of sampleFiles().flatMap(docsOf)) {
      const at = objectPath(o.kind!, o.metadata.name);
      await cp!.client.patch(at, { status: { observedGeneration: 99 } }, 'merge');
      assert.equal((await cp!.client.get(at)).status, undefined, `${o.kind}: status is not written through the main resource`);
      const live = await cp!.client.patch(`${at}/status`, { status: { observedGeneration: 1, conditions: ready('True', 'Reconciled') } }, 'merge');
      assert.equal(live.status.conditions[0].reason, 'Reconciled', `${o.kind}: status written through /status`);
    }
    await cp!.client.patch(`${objectPath('NodePool', 'dc1-pool')}/status`, { spec: { replicas: 7 }, status: {
      replicas: 2, readyReplicas: 1, selector: 'app.kubernetes.io/instance=dc1-pool', rebalance, conditions: ready('False', 'Rebalancing'),
    } }, 'merge');
    assert.equal((await getObject('NodePool', 'dc1-pool'))!.spec.replicas, 2, 'the status subresource does not write the spec');
    assert.match(await kubectl(['get', 'nodepool', 'dc1-pool']), /dc1-pool\s+dc1\s+2\s+1\s+42%\s+False\s/);
    await cp!.client.patch(`${objectPath('Grid', 'demo')}/status`, { status: { phase: 'Rebalancing', readyNodes: 5, desiredNodes: 6, layoutVersion: 3, rebalance } }, 'merge');
    assert.match(await kubectl(['get', 'grid', 'demo']), /demo\s+Rebalancing\s+5\s+6\s+3\s+42%\s/);
    await assert.rejects(
      cp!.client.patch(`${objectPath('Grid', 'demo')}/status`, { status: { phase: 'Exploded' } }, 'merge'),
      (err: KubeApiError) => err.statusCode === 422 && /status\.phase: Unsupported value: "Exploded"/.test(err.message),
    );
  });

  it('scales a NodePool with `kubectl scale` through the scale subresource, and refuses 0 replicas', async () => {
    const before = (await getObject('NodePool', 'dc1-pool'))!;
    assert.match(await kubectl(['scale', 'nodepool/dc1-pool', '--replicas=3']), /nodepool\.storage\.archipel\.io\/dc1-pool scaled/);
    const after = (await getObject('NodePool', 'dc1-pool'))!;
    assert.equal(after.spec.replicas, 3);
    assert.equal(after.metadata.generation, (before.metadata.generation as number) + 1, 'a scale is a spec change');
    assert.deepEqual({ ...after.spec, replicas: before.spec.replicas }, before.spec, 'only spec.replicas changed');
    const scale = await cp!.client.get(`${objectPath('NodePool', 'dc1-pool')}/scale`);
    assert.deepEqual([scale.spec.replicas, scale.status.replicas, scale.status.selector], [3, 2, 'app.kubernetes.io/instance=dc1-pool']);
    await assert.rejects(kubectl(['scale', 'nodepool/dc1-pool', '--replicas=0']),
      /The NodePool "dc1-pool" is invalid: spec\.replicas: Invalid value: 0: spec\.replicas in body should be greater than or equal to 1/);
    assert.equal((await getObject('NodePool', 'dc1-pool'))!.spec.replicas, 3);
  });
});
