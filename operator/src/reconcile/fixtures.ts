/** Test fixtures of the reconcilers: a node's rebalance status. Not a test file itself. */
import type { RebalanceStatus } from '../../../storage-node/src/admin/api-types';

/** An idle node under layout version 2, with `over` applied. */
export function rb(over: Partial<RebalanceStatus> = {}): RebalanceStatus {
  return {
    layoutVersion: 2, openVersions: [], phase: 'idle', partitionsToMove: 0, partitionsMoved: 0, bucketsToSync: 0, bucketsSynced: 0,
    bytesToMove: 0, bytesMoved: 0, bytesPerSecond: 0, etaSeconds: null, maxBytesPerSecond: 0, heldBlobs: 0, ownedBlobs: 0, drained: false, waitingFor: [],
    ...over,
  };
}
