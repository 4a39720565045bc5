import assert from 'node:assert/strict';
import { threeSites } from '../builders/fixtures';
import { buildGridSecret } from '../builders/secrets';
import { GridLocks, newGridSecretValues, poolProblems, readGridSecretValues } from './grid';

describe('operator: a grid pass', () => {
  it('gives a NodePool the problems that name it or one of its nodes, not those of a pool with a longer name', () => {
    const problems = [
      'NodePool dc1-pool: scaling to 1 leaves site dc1 with 0 active nodes',
      'storage node dc1-pool-2 does not answer its admin API: timeout',
      'storage node dc1-pool-big-0 does not answer its admin API: timeout',
      'StatefulSet dc2-pool: refused',
    ];
    assert.deepEqual(poolProblems(problems, 'dc1-pool'), problems.slice(0, 2));
    assert.deepEqual(poolProblems(problems, 'dc1-pool-big'), [problems[2]]);
    assert.deepEqual(poolProblems(problems, 'dc2-pool'), [problems[3]], 'its StatefulSet');
  });

  it('generates grid Secret values the builder accepts and reads them back', () => {
    const { grid } = threeSites();
    const a = newGridSecretValues();
    assert.notEqual(a.gridSecret, newGridSecretValues().gridSecret);
    const secret = buildGridSecret(grid, a);
    assert.deepEqual(readGridSecretValues(secret, 'Grid demo'), a);
    assert.throws(() => readGridSecretValues({ metadata: { name: 's' }, data: {} }, 'Grid demo'), /Secret s has no key grid-secret/);
  });

  it('runs the passes of one grid one after the other, others in parallel', async () => {
    const locks = new GridLocks();
    const order: string[] = [];
    const slow = (tag: string, ms: number) => () => new Promise<void>((r) => setTimeout(() => { order.push(tag); r(); }, ms));
    await Promise.all([locks.run('g', slow('g1', 30)), locks.run('g', slow('g2', 1)), locks.run('h', slow('h1', 5))]);
    assert.deepEqual(order, ['h1', 'g1', 'g2']);
    await assert.rejects(locks.run('g', () => Promise.reject(new Error('boom'))), /boom/);
    await locks.run('g', async () => { order.push('after'); });
    assert.equal(order.at(-1), 'after', 'a failed pass does not block the next');
  });
});
