import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { parseResources } from './parse';
import { resolveGrid } from './resolve';
import { quantityToBytes } from './fields';

/** The repository's examples/three-sites.yaml, found upwards from the compiled test (dist/ or .build/<name>/). */
function examplePath(): string {
  for (let dir = __dirname, i = 0; i < 8; dir = path.dirname(dir), i++) {
    const p = path.join(dir, 'examples', 'three-sites.yaml');
    if (fs.existsSync(p)) return p;
  }
  throw new Error('examples/three-sites.yaml not found');
}
const EXAMPLE = examplePath();
const API = 'apiVersion: storage.archipel.io/v1alpha1';

function doc(kind: string, name: string, spec: string): string {
  return `${API}\nkind: ${kind}\nmetadata:\n  name: ${name}\nspec:\n${spec.split('\n').map((l) => `  ${l}`).join('\n')}\n`;
}

const GRID = doc('Grid', 'demo', 'defaultPolicy: default');
const SITE = doc('Site', 'dc1', 'grid: demo');
const POOL = doc('NodePool', 'dc1-pool', 'site: dc1\nreplicas: 2');
const POLICY = doc('ReplicationPolicy', 'default', 'grid: demo\nrules:\n  - site: dc1');

function errorsOf(...docs: string[]): string[] {
  return parseResources(docs.join('---\n')).errors;
}

function assertError(errors: string[], want: string): void {
  assert.ok(errors.includes(want), `want ${JSON.stringify(want)}, got ${JSON.stringify(errors, null, 1)}`);
}

describe('planner: parsing custom resources', () => {
  it('reads the three-site example without an error and fills in the defaults', () => {
    const parsed = parseResources(fs.readFileSync(EXAMPLE, 'utf8'));
    assert.deepEqual(parsed.errors, []);
    assert.equal(parsed.grids.length, 1);
    assert.deepEqual(parsed.sites.map((s) => [s.metadata.name, s.spec.role, s.spec.state]), [
      ['dc1', 'primary', 'Active'], ['dc2', 'primary', 'Active'], ['dc3', 'fallback', 'Active'],
    ]);
    assert.deepEqual(parsed.pools.map((p) => [p.metadata.name, p.spec.site, p.spec.replicas]), [
      ['dc1-pool', 'dc1', 2], ['dc2-pool', 'dc2', 2], ['dc3-pool', 'dc3', 2],
    ]);
    const g = parsed.grids[0].spec;
    assert.equal(g.partitionCount, 4096);
    assert.deepEqual([g.s3.port, g.admin.port, g.rpc.port], [9000, 9001, 9002]);
    assert.equal(g.audit.enabled, true);
    const policy = parsed.policies[0].spec;
    assert.equal(policy.ingest, 'balanced');
    assert.deepEqual(policy.rules, [{ site: 'dc1', copies: 1 }, { site: 'dc2', copies: 1 }, { site: 'dc3', copies: 1 }]);
    const r = resolveGrid(parsed);
    assert.deepEqual(r.errors, []);
    assert.equal(r.grid?.metadata.name, 'demo');
  });

  it('defaults a minimal spec', () => {
    const parsed = parseResources([GRID, SITE, POOL, POLICY, doc('Bucket', 'scans', 'grid: demo')].join('---\n'));
    assert.deepEqual(parsed.errors, []);
    assert.deepEqual(parsed.policies[0].spec, { grid: 'demo', priority: 0, match: { buckets: ['*'] }, rules: [{ site: 'dc1', copies: 1 }], ingest: 'balanced' });
    assert.deepEqual(parsed.pools[0].spec.storage, { size: '10Gi' });
    assert.deepEqual(parsed.buckets[0].spec, {
      grid: 'demo', bucketName: 'scans', versioning: 'Disabled', deletionPolicy: 'Retain', secretName: 'scans-s3', grants: ['owner'],
    });
  });

  it('names the object and the field of each mistake', () => {
    const cases: [string, string][] = [
      [doc('NodePool', 'dc1-pool', 'site: dc1\nreplicas: 0'), 'NodePool dc1-pool: spec.replicas must be an integer ≥ 1'],
      [doc('NodePool', 'dc1-pool', 'site: dc1\nreplicas: 2.5'), 'NodePool dc1-pool: spec.replicas must be an integer ≥ 1'],
      [doc('NodePool', 'dc1-pool', 'site: dc1\nreplicas: "3"'), 'NodePool dc1-pool: spec.replicas must be an integer ≥ 1'],
      [doc('NodePool', 'dc1-pool', 'site: dc1\nreplicas: 1000'), 'NodePool dc1-pool: spec.replicas must be at most 256'],
      [doc('NodePool', 'dc1-pool', 'replicas: 1'), 'NodePool dc1-pool: spec.site is required'],
      [doc('NodePool', 'dc1-pool', 'site: dc1\nreplica: 3'), 'NodePool dc1-pool: spec.replica is not a known field'],
      [doc('NodePool', 'dc1-pool', 'site: dc1\nstorage:\n  size: ten'), 'NodePool dc1-pool: spec.storage.size must be a quantity such as 10Gi (got "ten")'],
      [doc('Site', 'dc1', 'grid: demo\nrole: backup'), 'Site dc1: spec.role must be one of primary, fallback (got "backup")'],
      [doc('Site', 'dc1', 'grid: demo\nstate: failed'), 'Site dc1: spec.state must be one of Active, Failed (got "failed")'],
      [doc('Site', 'dc1', 'grid: Demo'), 'Site dc1: spec.grid must be a DNS label (lowercase letters, digits, -) (got "Demo")'],
      [doc('Grid', 'demo', 'partitionCount: 0'), 'Grid demo: spec.partitionCount must be an integer ≥ 1'],
      [doc('Grid', 'demo', 's3:\n  port: 9001'), 'Grid demo: spec.admin.port must differ from spec.s3.port (both 9001)'],
      [doc('Grid', 'demo', 'encryption:\n  enabled: true'), 'Grid demo: spec.encryption.keySecretName is required when encryption is enabled'],
      [doc('Grid', 'demo', 'audit:\n  enabled: yes please'), 'Grid demo: spec.audit.enabled must be true or false'],
      [doc('ReplicationPolicy', 'p', 'grid: demo'), 'ReplicationPolicy p: spec.rules must list at least one rule ({ site, copies })'],
      [doc('ReplicationPolicy', 'p', 'grid: demo\nrules:\n  - site: dc1\n    copies: 0'), 'ReplicationPolicy p: spec.rules[0].copies must be an integer ≥ 1'],
      [doc('ReplicationPolicy', 'p', 'grid: demo\nrules:\n  - site: dc1\n  - site: dc1'), 'ReplicationPolicy p: spec.rules[1].site names site dc1 a second time'],
      [doc('ReplicationPolicy', 'p', 'grid: demo\nrules:\n  - site: dc1\ningest: fast'), 'ReplicationPolicy p: spec.ingest must be one of strict, balanced, dualCommit (got "fast")'],
      [doc('ReplicationPolicy', 'p', 'grid: demo\nrules:\n  - site: dc1\ningest: dualCommit'), 'ReplicationPolicy p: spec.ingest dualCommit needs at least 2 copies in all'],
      [doc('ReplicationPolicy', 'p', 'grid: demo\nmatch:\n  buckets: ["Med_*"]\nrules:\n  - site: dc1'), 'ReplicationPolicy p: spec.match.buckets[0] must be a bucket name or glob (a-z 0-9 . - * ?) (got "Med_*")'],
      [doc('Bucket', 'b1', 'grid: demo'), 'Bucket b1: spec.bucketName is required: metadata.name b1 is not a valid S3 bucket name'],
      [doc('Bucket', 'scans', 'grid: demo\nobjectLock:\n  enabled: true'), 'Bucket scans: spec.objectLock.enabled requires spec.versioning: Enabled'],
      [doc('Bucket', 'scans', 'grid: demo\nversioning: Enabled\nobjectLock:\n  enabled: true\n  defaultRetention:\n    mode: COMPLIANCE\n    days: 1\n    years: 1'),
        'Bucket scans: spec.objectLock.defaultRetention must set days or years, not both and not neither'],
      [doc('Bucket', 'scans', 'grid: demo\ngrants: [admin]'), 'Bucket scans: spec.grants[0] must be read, write or owner (got "admin")'],
      [doc('Bucket', 'scans', 'grid: demo\ndeletionPolicy: Purge'), 'Bucket scans: spec.deletionPolicy must be one of Retain, Delete (got "Purge")'],
    ];
    for (const [text, want] of cases) assertError(errorsOf(text), want);
  });

  it('leaves an object with a mistake out, and keeps the good ones', () => {
    const parsed = parseResources([GRID, doc('NodePool', 'bad', 'site: dc1\nreplicas: -1'), POOL].join('---\n'));
    assert.deepEqual(parsed.pools.map((p) => p.metadata.name), ['dc1-pool']);
    assert.equal(parsed.errors.length, 1);
  });

  it('reports YAML syntax errors, bad documents, kinds and versions with their position', () => {
    assert.match(errorsOf(GRID, 'kind: [unclosed\n')[0], /^document 2: YAML error/);
    assertError(errorsOf('- a list\n'), 'document 1: must be a mapping with apiVersion, kind, metadata and spec');
    assertError(errorsOf('kind: Grid\n'), 'document 1: apiVersion and kind are required');
    assertError(errorsOf('apiVersion: storage.archipel.io/v1\nkind: Grid\nmetadata: {name: x}\n'), 'document 1: apiVersion storage.archipel.io/v1 is not supported (use storage.archipel.io/v1alpha1)');
    assertError(errorsOf(`${API}\nkind: Cluster\nmetadata: {name: x}\n`), 'document 1: kind Cluster is not one of Grid, Site, NodePool, ReplicationPolicy, Bucket');
    assertError(errorsOf(`${API}\nkind: Site\nmetadata: {name: DC_1}\n`), 'document 1: Site metadata.name must be a DNS label (got "DC_1")');
    assertError(errorsOf(`${API}\nkind: Site\nmetadata: {name: dc1}\nspec: 3\n`), 'Site dc1: spec must be an object');
    assertError(errorsOf(SITE, SITE), 'Site dc1: defined twice');
  });

  it('skips documents of other APIs and empty documents, and says which', () => {
    const parsed = parseResources(['apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n', '', GRID].join('---\n'));
    assert.deepEqual(parsed.errors, []);
    assert.deepEqual(parsed.ignored, ['document 1: v1 Secret']);
    assert.equal(parsed.grids.length, 1);
  });

  it('refuses oversized input and alias bombs without hanging', () => {
    assertError(parseResources('#'.repeat(1024 * 1024 + 1)).errors, 'the file is larger than 1048576 bytes');
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x]'];
    for (let i = 0; i < 20; i++) bomb.push(`${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [*${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}]`);
    const parsed = parseResources(bomb.join('\n'));
    assert.equal(parsed.errors.length, 1);
    assert.match(parsed.errors[0], /^document 1: YAML error: Excessive alias count/);
  });

  it('converts Kubernetes quantities to bytes', () => {
    assert.equal(quantityToBytes('10Gi'), 10 * 2 ** 30);
    assert.equal(quantityToBytes('500M'), 500e6);
    assert.equal(quantityToBytes('1.5Ti'), 1.5 * 2 ** 40);
    assert.equal(quantityToBytes('1024'), 1024);
    assert.equal(quantityToBytes('ten'), undefined);
    assert.equal(quantityToBytes('9Ei'), undefined, 'beyond safe integers');
  });
});

describe('planner: resolving references', () => {
  it('names references that do not resolve, and leaves those objects out', () => {
    const parsed = parseResources([
      GRID, SITE, POOL, POLICY,
      doc('Site', 'dc9', 'grid: nope'),
      doc('NodePool', 'lost-pool', 'site: dc7'),
      doc('ReplicationPolicy', 'med', 'grid: demo\nrules:\n  - site: dc1\n  - site: dc8'),
      doc('Bucket', 'scans', 'grid: demo\npolicy: med'),
      doc('Bucket', 'photos', 'grid: demo\npolicy: missing'),
    ].join('---\n'));
    assert.deepEqual(parsed.errors, []);
    const r = resolveGrid(parsed);
    assert.ok(r.grid);
    assert.deepEqual(r.errors.sort(), [
      'Bucket photos: spec.policy "missing" does not name a usable ReplicationPolicy of grid demo',
      'Bucket scans: spec.policy "med" does not name a usable ReplicationPolicy of grid demo',
      'NodePool lost-pool: spec.site "dc7" does not name a Site',
      'ReplicationPolicy med: spec.rules[1].site "dc8" does not name a Site of grid demo',
      'Site dc9: spec.grid "nope" does not name a Grid',
    ]);
    if (!r.grid) return;
    assert.deepEqual(r.sites.map((s) => s.metadata.name), ['dc1']);
    assert.deepEqual(r.pools.map((p) => p.metadata.name), ['dc1-pool']);
    assert.deepEqual(r.policies.map((p) => p.metadata.name), ['default']);
    assert.deepEqual(r.buckets, []);
  });

  it('reports a missing default policy', () => {
    const r = resolveGrid(parseResources([GRID, SITE].join('---\n')));
    assert.deepEqual(r.errors, ['Grid demo: spec.defaultPolicy "default" does not name a ReplicationPolicy of this grid']);
  });

  it('chooses the grid by name, or the only one, and says when it cannot', () => {
    const two = parseResources([GRID, doc('Grid', 'other', ''), SITE, doc('Site', 'x1', 'grid: other')].join('---\n'));
    assert.deepEqual(resolveGrid(two).errors, ['several Grids (demo, other): say which one']);
    const r = resolveGrid(two, 'other');
    assert.equal(r.grid?.metadata.name, 'other');
    if (r.grid) assert.deepEqual(r.sites.map((s) => s.metadata.name), ['x1'], 'objects of another grid are not errors');
    assert.deepEqual(resolveGrid(two, 'third').errors, ['no Grid named third']);
    assert.deepEqual(resolveGrid(parseResources(SITE)).errors, ['no Grid found']);
  });

  it('resolves within a namespace only', () => {
    const nsSite = `${API}\nkind: Site\nmetadata:\n  name: dc1\n  namespace: team-b\nspec:\n  grid: demo\n`;
    const r = resolveGrid(parseResources([GRID, nsSite, POLICY].join('---\n')));
    assert.ok(r.errors.includes('Site dc1: spec.grid "demo" does not name a Grid'));
  });
});
