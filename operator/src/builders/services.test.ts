import assert from 'node:assert/strict';
import { BuildError } from './common';
import { buildSitePodDisruptionBudget } from './disruption-budget';
import { grid, NS, pool, podLabels, selects, site, threeSites } from './fixtures';
import { buildGridS3Service, buildHeadlessService, buildSiteS3Service } from './services';
import { buildStatefulSet } from './statefulset';

/** Pod labels of every pool of the three-site grid, plus a pod of another grid in the same namespace. */
function pods(): { name: string; labels: Record<string, string> }[] {
  const { grid: g, sites, pools } = threeSites();
  const ours = pools.map((p) => ({ name: p.metadata.name, labels: podLabels(buildStatefulSet(p, g, sites)) }));
  const other = grid({}, 'other');
  const otherSite = site('dc1', { grid: 'other' });
  const theirs = { name: 'other/dc1-pool', labels: podLabels(buildStatefulSet(pool('dc1-pool'), other, [otherSite])) };
  return [...ours, theirs];
}

const selected = (selector: Record<string, string> | undefined): string[] =>
  pods().filter((p) => selects(selector, p.labels)).map((p) => p.name).sort();

describe('builders: Services and PodDisruptionBudgets', () => {
  it('has a headless Service that publishes not-ready pods, for peer RPC between nodes that are still joining', () => {
    const svc = buildHeadlessService(grid({ rpc: { port: 7002 } }));
    assert.equal(svc.kind, 'Service');
    assert.equal(svc.metadata?.name, 'demo-nodes');
    assert.equal(svc.metadata?.namespace, NS);
    assert.equal(svc.spec?.clusterIP, 'None');
    assert.equal(svc.spec?.publishNotReadyAddresses, true);
    assert.deepEqual(svc.spec?.ports?.map((p) => [p.name, p.port, p.targetPort]), [['rpc', 7002, 'rpc'], ['s3', 9000, 's3'], ['admin', 9001, 'admin']]);
    assert.deepEqual(selected(svc.spec?.selector), ['dc1-pool', 'dc2-pool', 'dc3-pool']);
    assert.equal(svc.metadata?.ownerReferences?.[0].kind, 'Grid');
  });

  it('has a grid-wide S3 Service over every node of the grid (and no other grid), ready ones only', () => {
    const svc = buildGridS3Service(grid({ s3: { port: 8080 } }));
    assert.equal(svc.metadata?.name, 'demo-s3');
    assert.equal(svc.spec?.clusterIP, undefined, 'a cluster IP: the S3 endpoint');
    assert.equal(svc.spec?.publishNotReadyAddresses, undefined, 'Kubernetes keeps not-Ready pods out of its endpoints');
    assert.deepEqual(svc.spec?.ports, [{ name: 's3', port: 8080, targetPort: 's3', protocol: 'TCP' }]);
    assert.deepEqual(selected(svc.spec?.selector), ['dc1-pool', 'dc2-pool', 'dc3-pool']);
    assert.equal(svc.metadata?.ownerReferences?.[0].name, 'demo');
  });

  it('has one S3 Service per site over that site nodes only, owned by the Site', () => {
    for (const s of ['dc1', 'dc2', 'dc3']) {
      const svc = buildSiteS3Service(grid(), site(s));
      assert.equal(svc.metadata?.name, `demo-${s}-s3`);
      assert.deepEqual(svc.spec?.ports?.map((p) => p.targetPort), ['s3']);
      assert.deepEqual(selected(svc.spec?.selector), [`${s}-pool`]);
      assert.deepEqual(svc.metadata?.ownerReferences, [{
        apiVersion: 'storage.archipel.io/v1alpha1', kind: 'Site', name: s, uid: `uid-site-${s}`, controller: true, blockOwnerDeletion: true,
      }]);
    }
  });

  it('lets at most one node of a site be disrupted at a time', () => {
    for (const s of ['dc1', 'dc2', 'dc3']) {
      const pdb = buildSitePodDisruptionBudget(grid(), site(s));
      assert.equal(pdb.apiVersion, 'policy/v1');
      assert.equal(pdb.kind, 'PodDisruptionBudget');
      assert.equal(pdb.metadata?.name, `demo-${s}`);
      assert.equal(pdb.spec?.maxUnavailable, 1);
      assert.equal(pdb.spec?.minAvailable, undefined);
      assert.deepEqual(selected(pdb.spec?.selector?.matchLabels), [`${s}-pool`]);
      assert.equal(pdb.metadata?.ownerReferences?.[0].kind, 'Site');
    }
  });

  it('refuses a Site of another grid or namespace', () => {
    const other = site('dc1', { grid: 'other' });
    assert.throws(() => buildSiteS3Service(grid(), other), (e: Error) => e instanceof BuildError && /Site dc1: spec\.grid is "other", not "demo"/.test(e.message));
    assert.throws(() => buildSitePodDisruptionBudget(grid(), other), BuildError);
    const elsewhere = site('dc1');
    elsewhere.metadata.namespace = 'team-b';
    assert.throws(() => buildSiteS3Service(grid(), elsewhere), (e: Error) => /namespace "team-b"/.test(e.message));
  });

  it('refuses names Kubernetes would reject, saying which', () => {
    const long = site(`s${'x'.repeat(60)}`);
    assert.throws(() => buildSiteS3Service(grid(), long), (e: Error) => e instanceof BuildError && /Service name "demo-sx+-s3" is not valid/.test(e.message));
    assert.throws(() => buildGridS3Service(grid({}, '9lives')), (e: Error) => e instanceof BuildError && /starting with a letter/.test(e.message));
  });

  it('is deterministic', () => {
    assert.deepStrictEqual(buildHeadlessService(grid()), buildHeadlessService(grid()));
    assert.deepStrictEqual(buildGridS3Service(grid()), buildGridS3Service(grid()));
    assert.deepStrictEqual(buildSiteS3Service(grid(), site('dc1')), buildSiteS3Service(grid(), site('dc1')));
    assert.deepStrictEqual(buildSitePodDisruptionBudget(grid(), site('dc1')), buildSitePodDisruptionBudget(grid(), site('dc1')));
  });
});
