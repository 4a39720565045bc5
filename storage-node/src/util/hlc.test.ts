import assert from 'node:assert/strict';
import { HybridClock, newVersionId, isValidVersionId } from './hlc';

describe('hybrid clock and version ids', () => {
  it('never goes backwards, even when the wall clock does', () => {
    let wall = 1_000_000;
    const c = new HybridClock(() => wall);
    const a = c.now();
    wall -= 5000;
    const b = c.now();
    assert.ok(b > a);
    c.observe(b + 1_000_000);
    assert.ok(c.now() > b + 1_000_000);
  });

  it('version ids sort like the clock values they carry', () => {
    const c = new HybridClock();
    const ids = Array.from({ length: 100 }, () => newVersionId(c.now()));
    assert.deepEqual([...ids].sort(), ids);
    for (const id of ids) assert.ok(isValidVersionId(id), id);
    assert.ok(isValidVersionId('null'));
    assert.equal(isValidVersionId('../etc'), false);
  });
});
