import assert from 'node:assert/strict';
import type { RebalanceStatus } from '../../storage-node/src/admin/api-types';
import { drainDone, inTransition, rebalanceCell, siteProgressLine, transitionDone } from './rebalance';

const MiB = 1024 ** 2;

function rb(over: Partial<RebalanceStatus> = {}): RebalanceStatus {
  return {
    layoutVersion: 4, openVersions: [], phase: 'idle', partitionsToMove: 0, partitionsMoved: 0, bucketsToSync: 0, bucketsSynced: 0,
    bytesToMove: 0, bytesMoved: 0, bytesPerSecond: 0, etaSeconds: null, maxBytesPerSecond: 0, heldBlobs: 0, ownedBlobs: 0, drained: false, waitingFor: [],
    ...over,
  };
}

describe('local runtime: rebalance progress', () => {
  it('shows a site moving bytes: bar, percentage, bytes, partitions left, rate and the slowest node\'s ETA', () => {
    const line = siteProgressLine('dc1', [
      { id: 'dc1-pool-0', draining: false, rebalance: rb({ phase: 'synced', openVersions: [3] }) },
      { id: 'dc1-pool-1', draining: false, rebalance: rb({ phase: 'copying', openVersions: [3], partitionsToMove: 20, partitionsMoved: 10, bytesToMove: 166 * MiB, bytesMoved: 70 * MiB, bytesPerSecond: 20 * MiB, etaSeconds: 5 }) },
      { id: 'dc1-pool-2', draining: false, rebalance: rb({ phase: 'copying', openVersions: [3], partitionsToMove: 10, partitionsMoved: 8, bytesToMove: 100 * MiB, bytesMoved: 50 * MiB, bytesPerSecond: 10 * MiB, etaSeconds: 3.2 }) },
    ]);
    assert.equal(line, 'dc1 [#########-----------] 45% 120 MiB of 266 MiB, 12 partitions left, 30 MiB/s, ETA 5 s (dc1-pool-0 synced; dc1-pool-1 copying; dc1-pool-2 copying)');
  });

  it('counts partitions while a node does not know the size of what it copies yet, and says the ETA is unknown', () => {
    const line = siteProgressLine('dc2', [
      { id: 'dc2-pool-0', draining: false, rebalance: rb({ phase: 'copying', openVersions: [3], partitionsToMove: 10, partitionsMoved: 5, bytesToMove: 50 * MiB, bytesMoved: 40 * MiB, etaSeconds: 2 }) },
      { id: 'dc2-pool-1', draining: false, rebalance: rb({ phase: 'copying', openVersions: [3], partitionsToMove: 10, partitionsMoved: 0 }) },
    ]);
    assert.equal(line, 'dc2 [#####---------------] 25% 5 of 20 partitions, 0 B/s, ETA unknown (dc2-pool-0 copying; dc2-pool-1 copying)');
  });

  it('shows a drain: the nodes taking the copies in, the draining node and what it still holds', () => {
    const line = siteProgressLine('dc1', [
      { id: 'dc1-pool-0', draining: false, rebalance: rb({ phase: 'copying', openVersions: [5], partitionsToMove: 4, partitionsMoved: 1, bytesToMove: 4 * MiB, bytesMoved: MiB, bytesPerSecond: MiB, etaSeconds: 3 }) },
      { id: 'dc1-pool-1', draining: true, rebalance: rb({ phase: 'waiting', openVersions: [5], heldBlobs: 1234 }) },
    ]);
    assert.equal(line, 'dc1 [#####---------------] 25% 1.0 MiB of 4.0 MiB, 3 partitions left, 1.0 MiB/s, ETA 3 s (dc1-pool-0 copying; dc1-pool-1 draining, 1234 copies held)');
    const after = siteProgressLine('dc1', [
      { id: 'dc1-pool-0', draining: false, rebalance: rb({ partitionsToMove: 4, partitionsMoved: 4 }) },
      { id: 'dc1-pool-1', draining: true, rebalance: rb({ drained: true }) },
    ]);
    assert.equal(after, undefined, 'nothing to show once the drain is over');
  });

  it('shows a full bar once every partition is in, and never a full bar before', () => {
    const done = siteProgressLine('dc3', [{ id: 'n', draining: false, rebalance: rb({ phase: 'cleaning', openVersions: [], partitionsToMove: 3, partitionsMoved: 3, bytesToMove: 10, bytesMoved: 10 }) }]);
    assert.equal(done, 'dc3 [####################] 100% 10 B of 10 B (n cleaning)');
    const heldAlready = siteProgressLine('dc3', [
      { id: 'n', draining: false, rebalance: rb({ phase: 'synced', openVersions: [2], partitionsToMove: 43, partitionsMoved: 43, bytesToMove: 48 * MiB, bytesMoved: 0 }) },
      { id: 'm', draining: false, rebalance: rb({ phase: 'copying', openVersions: [2], partitionsToMove: 10, partitionsMoved: 5, bytesToMove: 16 * MiB, bytesMoved: 4 * MiB, etaSeconds: 1 }) },
    ]);
    assert.match(heldAlready ?? '', /^dc3 \[#+-+\] 81% 52 MiB of 64 MiB, 5 partitions left/, 'a node with every partition in counts all its bytes, even those it found already there');
    const almost = siteProgressLine('dc3', [{ id: 'n', draining: false, rebalance: rb({ phase: 'copying', partitionsToMove: 3, partitionsMoved: 2, bytesToMove: 10, bytesMoved: 10, etaSeconds: 1 }) }]);
    assert.match(almost ?? '', /^dc3 \[###################-\] 99% /);
    const waiting = siteProgressLine('dc3', [{ id: 'n', draining: false, rebalance: rb({ phase: 'waiting', openVersions: [2] }) }]);
    assert.equal(waiting, 'dc3 [--------------------] 0% (n waiting)');
  });

  it('has no line for a site whose nodes are idle or do not report transitions', () => {
    assert.equal(siteProgressLine('dc1', [{ id: 'a', draining: false, rebalance: rb() }, { id: 'b', draining: false }]), undefined);
    assert.equal(inTransition({ id: 'a', draining: false, rebalance: rb({ openVersions: [3] }) }), true, 'an old version still open');
    assert.equal(siteProgressLine('dc1', [{ id: 'a', draining: false, rebalance: rb({ openVersions: [2, 3] }) }]), 'dc1 [####################] 100% (a idle, versions 2, 3 still open)');
    assert.equal(inTransition({ id: 'a', draining: true, rebalance: rb() }), true, 'a drain not over');
  });

  it('says a node is done with a transition only under the new version, idle, with nothing open', () => {
    assert.equal(transitionDone(undefined, 9), true, 'a node that does not report transitions has none to wait for');
    assert.equal(transitionDone(rb({ layoutVersion: 4 }), 4), true);
    assert.equal(transitionDone(rb({ layoutVersion: 3 }), 4), false, 'a status from before the layout arrived');
    assert.equal(transitionDone(rb({ phase: 'synced' }), 4), false);
    assert.equal(transitionDone(rb({ openVersions: [3] }), 4), false);
    assert.equal(drainDone(rb({ drained: true }), 4), true);
    assert.equal(drainDone(rb({ drained: true, layoutVersion: 3 }), 4), false);
    assert.equal(drainDone(undefined, 4), false, 'never stop a node that cannot say it is drained');
  });

  it('fills the REBALANCE column with the phase, drained, or -', () => {
    assert.equal(rebalanceCell(undefined), '-');
    assert.equal(rebalanceCell(rb({ phase: 'copying' })), 'copying');
    assert.equal(rebalanceCell(rb({ drained: true })), 'drained');
  });
});
