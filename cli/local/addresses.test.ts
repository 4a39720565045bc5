import assert from 'node:assert/strict';
import { parseResources } from '../../operator/src/planner/parse';
import { resolveGrid, type ResolvedGrid } from '../../operator/src/planner/resolve';
import { assignAddresses, portsFor, wantedNodes } from './addresses';
import { LocalError } from './state';

const API = 'apiVersion: storage.archipel.io/v1alpha1';
const doc = (kind: string, name: string, spec: string): string => `${API}\nkind: ${kind}\nmetadata:\n  name: ${name}\nspec:\n${spec.split('\n').map((l) => `  ${l}`).join('\n')}\n`;

function grid(sites: [string, number][], extra = ''): ResolvedGrid {
  const docs = [doc('Grid', 'g', 's3:\n  port: 9100\nadmin:\n  port: 9101\nrpc:\n  port: 9102')];
  for (const [s, n] of sites) docs.push(doc('Site', s, 'grid: g'), doc('NodePool', `${s}-pool`, `site: ${s}\nreplicas: ${n}`));
  docs.push(doc('ReplicationPolicy', 'default', `grid: g\nrules:\n${sites.map(([s]) => `  - site: ${s}`).join('\n')}`));
  const r = resolveGrid(parseResources(docs.join('---\n') + extra));
  assert.ok(r.grid, JSON.stringify(r.errors));
  return r as ResolvedGrid;
}

describe('local runtime: loopback addresses and ports', () => {
  it('gives site i, node j the address 127.0.0.(10(i+1)+j+1), sites in file order', () => {
    const r = grid([['b', 2], ['a', 1]]);
    const { nodes } = assignAddresses(r, { sites: [], nodes: [] }, wantedNodes(r));
    assert.deepEqual(nodes.map((n) => [n.id, n.host]), [['a-pool-0', '127.0.0.21'], ['b-pool-0', '127.0.0.11'], ['b-pool-1', '127.0.0.12']]);
  });

  it('keeps the address of every known node when sites and nodes are added, and gives new ones free places', () => {
    const r1 = grid([['b', 2], ['a', 1]]);
    const first = assignAddresses(r1, { sites: [], nodes: [] }, wantedNodes(r1));
    const r2 = grid([['a', 2], ['c', 1], ['b', 2]]); // reordered, a site and a node added
    const second = assignAddresses(r2, first, wantedNodes(r2));
    const host = (id: string): string | undefined => second.nodes.find((n) => n.id === id)?.host;
    assert.equal(host('b-pool-0'), '127.0.0.11');
    assert.equal(host('a-pool-0'), '127.0.0.21');
    assert.equal(host('a-pool-1'), '127.0.0.22');
    assert.equal(host('c-pool-0'), '127.0.0.31');
  });

  it('refuses more than 9 nodes in a site, saying so', () => {
    const r = grid([['a', 10]]);
    assert.throws(() => assignAddresses(r, { sites: [], nodes: [] }, wantedNodes(r)), (e: LocalError) => /at most 9 nodes per site/.test(e.message) && e.exitCode === 2);
  });

  it('leaves out the nodes of a site declared Failed', () => {
    const r = grid([['a', 1], ['b', 1]], `---\n${doc('Site', 'c', 'grid: g\nstate: Failed')}---\n${doc('NodePool', 'c-pool', 'site: c\nreplicas: 2')}`);
    assert.deepEqual(wantedNodes(r).map((w) => w.id), ['a-pool-0', 'b-pool-0']);
  });

  it('uses the Grid\'s ports when fixed, and the last ports (0 at first) when auto', () => {
    const r = grid([['a', 1]]);
    const [n] = assignAddresses(r, { sites: [], nodes: [] }, wantedNodes(r)).nodes;
    assert.deepEqual(portsFor(n, 'fixed', r.grid), { s3Port: 9100, adminPort: 9101, rpcPort: 9102 });
    assert.deepEqual(portsFor(n, 'auto', r.grid), { s3Port: 0, adminPort: 0, rpcPort: 0 });
    assert.deepEqual(portsFor({ ...n, s3Port: 4000, adminPort: 4001, rpcPort: 4002 }, 'auto', r.grid), { s3Port: 4000, adminPort: 4001, rpcPort: 4002 });
  });
});
