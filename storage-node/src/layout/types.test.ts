import assert from 'node:assert/strict';
import { isHostPort, validateLayout } from './types';
import type { Layout } from './types';
import { clone, makeLayout, node, randomLayout } from './testing';

function problemsAfter(change: (l: Layout) => void): string[] {
  const l = makeLayout([2, 2, 2]);
  change(l);
  return validateLayout(l);
}

describe('layout validation', () => {
  it('accepts well-formed layouts', () => {
    assert.deepEqual(validateLayout(makeLayout([2, 2, 2])), []);
    for (let seed = 1; seed <= 30; seed++) assert.deepEqual(validateLayout(randomLayout(seed)), [], `seed ${seed}`);
  });

  it('names duplicate node ids, rpc addresses, sites and policies', () => {
    assert.ok(problemsAfter((l) => l.nodes.push(clone(l.nodes[0]))).some((p) => /node n0-s0-0: duplicate id/.test(p)));
    assert.ok(problemsAfter((l) => { l.nodes[1].rpcAddress = l.nodes[0].rpcAddress; })
      .some((p) => /rpcAddress .* is also used by n0-s0-0/.test(p)));
    assert.ok(problemsAfter((l) => l.sites.push({ ...l.sites[0] })).includes('site s0: duplicate name'));
    assert.ok(problemsAfter((l) => l.policies.push(clone(l.policies[0]))).includes('policy default: duplicate name'));
  });

  it('names unknown sites in nodes and in rules', () => {
    assert.ok(problemsAfter((l) => { l.nodes[0].site = 'mars'; }).includes('node n0-s0-0: unknown site "mars"'));
    assert.ok(problemsAfter((l) => { l.policies[0].rules[0].site = 'mars'; }).includes('policy default: unknown site "mars"'));
  });

  it('reports a rule asking for more copies than its site has active nodes', () => {
    assert.ok(problemsAfter((l) => { l.policies[0].rules[0].copies = 3; })
      .includes('policy default: asks for 3 copies in site s0, which has 2 active node(s)'));
    assert.ok(problemsAfter((l) => { l.nodes[0].state = 'draining'; l.policies[0].rules[0].copies = 2; })
      .includes('policy default: asks for 2 copies in site s0, which has 1 active node(s)'), 'draining nodes do not count');
    assert.deepEqual(problemsAfter((l) => { l.sites[1].state = 'failed'; l.policies[0].rules[1].copies = 5; }), [],
      'rules on a failed site are the planner\'s to report');
  });

  it('checks fields one by one', () => {
    const cases: [(l: Layout) => void, RegExp][] = [
      [(l) => { l.version = -1; }, /version/],
      [(l) => { l.partitionCount = 0; }, /partitionCount/],
      [(l) => { l.partitionCount = 70000; }, /partitionCount/],
      [(l) => { l.nodes[0].rpcAddress = 'nohost'; }, /rpcAddress must be host:port/],
      [(l) => { l.nodes[0].s3Address = 'h:99999'; }, /s3Address must be host:port/],
      [(l) => { l.nodes[0].capacityBytes = 0; }, /capacityBytes/],
      [(l) => { (l.nodes[0] as { state: string }).state = 'gone'; }, /state must be/],
      [(l) => { (l.sites[0] as { role: string }).role = 'backup'; }, /role must be/],
      [(l) => { l.policies[0].rules = []; }, /at least one rule/],
      [(l) => { l.policies[0].rules[0].copies = 1.5; }, /copies must be an integer/],
      [(l) => { l.policies[0].rules.push({ site: 's0', copies: 1 }); }, /site s0 appears in two rules/],
      [(l) => { l.policies[0].match.buckets = ['Bad_Glob']; }, /bad bucket glob/],
      [(l) => { l.policies[0].match.prefixes = ['']; }, /bad prefix/],
      [(l) => { (l.policies[0] as { ingest: string }).ingest = 'fast'; }, /ingest must be/],
      [(l) => { l.policies[0].rules = [{ site: 's0', copies: 1 }]; l.policies[0].ingest = 'dualCommit'; }, /dualCommit needs at least 2/],
      [(l) => { l.defaultPolicy = 'missing'; }, /defaultPolicy "missing"/],
      [(l) => { l.nodes = []; l.policies[0].rules = [{ site: 's0', copies: 1 }]; }, /no site has an active node/],
    ];
    for (const [change, want] of cases) {
      const problems = problemsAfter(change);
      assert.ok(problems.some((p) => want.test(p)), `${want}: got ${JSON.stringify(problems)}`);
    }
  });

  it('survives garbage without throwing', () => {
    assert.deepEqual(validateLayout(null as unknown as Layout), ['layout must be an object']);
    assert.ok(validateLayout({ version: 1 } as unknown as Layout).length > 0);
    const l = makeLayout([1]);
    (l.nodes as unknown[]).push(null, { id: '' });
    assert.ok(validateLayout(l).length >= 2);
  });

  it('recognises host:port addresses', () => {
    for (const ok of ['127.0.0.2:7000', 'dc1-pool-0.archipel.svc:7000', '[::1]:9000', 'h:1', node('a', 's').rpcAddress]) assert.ok(isHostPort(ok), ok);
    for (const bad of ['', 'h', 'h:0', 'h:65536', 'http://h:1', 'h:1/x', ':80', 42]) assert.ok(!isHostPort(bad), String(bad));
  });
});
