// The gateway side of metadata replication: writes to every replica of a bucket and returns at a
// majority; reads from every replica, returns at a majority, merges by last writer wins.
import type { LayoutNode } from '../layout/types';
import { metaPlacement } from '../layout/placement';
import type { ObjectVersion } from '../meta/types';
import type { RpcClient } from '../rpc';
import { Logger, silentLogger } from '../util/logger';
import type { LayoutState } from './layout-state';
import { isPeerFailure, peerOf } from './membership';
import { KeyRecordsReply, META_PATHS, MetaReplica } from './meta-replica';
import { majority, majorityOfEach, mergeKeyRecords, untilEnough, VersionRecord } from './records';
import type { WriteEpochs } from './write-epochs';

/** Fewer replicas answered than a majority: the operation did not happen (writes) or cannot be trusted (reads). */
export class QuorumError extends Error {
  constructor(message: string, readonly answered: number, readonly needed: number) {
    super(message);
    this.name = 'QuorumError';
  }
}

export interface WriteOutcome {
  /** Replicas that made the records durable. */
  acked: string[];
  /** Replicas that did not (down, slow, refused); the caller owes them the records. */
  missed: { node: LayoutNode; error: string }[];
}

export interface MetaQuorumOptions {
  /** Deadline of one replica call. */
  timeoutMs?: number;
  logger?: Logger;
  /** Writes in flight by layout version (a transition waits for the old ones to end). */
  epochs?: WriteEpochs;
}

/**
 * Quorum access to the metadata of buckets. With N replicas (one per active site) a write waits
 * for W = majority durable acknowledgements and a read for R = majority answers, so W + R > N and
 * every read sees the last acknowledged write. Replicas that miss a write are reported so the gateway
 * queues them for repair; a read hands the merged winners back to replicas that were behind.
 */
export class MetaQuorum {
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly epochs: WriteEpochs | undefined;

  constructor(
    private readonly layout: LayoutState,
    private readonly rpc: RpcClient,
    private readonly local: MetaReplica,
    opts: MetaQuorumOptions = {},
  ) {
    this.log = opts.logger ?? silentLogger();
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.epochs = opts.epochs;
  }

  /** The bucket's replicas under the current layout. */
  replicas(bucket: string): LayoutNode[] {
    const l = this.layout.current;
    if (l === undefined) throw new QuorumError('no layout', 0, 1);
    return metaPlacement(l, bucket);
  }

  /**
   * The replicas reads ask: those of the oldest layout in use. Every acknowledged write reached a
   * majority of them (writes during a transition reach a majority under every layout in use), and a
   * new replica is read only once the transition that made it one is over (docs/decisions/0016).
   */
  readReplicas(bucket: string): LayoutNode[] {
    const l = this.layout.oldest;
    if (l === undefined) throw new QuorumError('no layout', 0, 1);
    const current = this.layout.current!;
    // The newest addresses: a node that moved is reached where it is now.
    return metaPlacement(l, bucket).map((n) => current.nodes.find((x) => x.id === n.id) ?? n);
  }

  /** The replica sets writes must reach a majority of: one per layout in use (one outside transitions). */
  writeSets(bucket: string): LayoutNode[][] {
    const current = this.layout.current;
    if (current === undefined) throw new QuorumError('no layout', 0, 1);
    const sets: LayoutNode[][] = [];
    const seen = new Set<string>();
    for (const l of this.layout.inUse) {
      const set = metaPlacement(l, bucket).map((n) => current.nodes.find((x) => x.id === n.id) ?? n);
      const key = set.map((n) => n.id).sort().join(',');
      if (seen.has(key)) continue;
      seen.add(key);
      sets.push(set);
    }
    return sets;
  }

  /** True when this node replicates the bucket under some layout in use. */
  isReplica(bucket: string): boolean {
    return this.writeSets(bucket).some((s) => s.some((n) => n.id === this.layout.nodeId));
  }

  /**
   * Sends the records (all of one bucket) to every replica; resolves once a majority made them
   * durable, with who did and who did not. Throws QuorumError when a majority cannot be reached.
   * Calls still running after the quorum finish in the background; their failures are reported
   * through `onLateMiss` so that they can be queued too.
   */
  async write(bucket: string, records: VersionRecord[], onLateMiss?: (node: LayoutNode, error: string) => void): Promise<WriteOutcome> {
    const end = this.epochs?.begin(this.layout.version);
    try {
      const sets = this.writeSets(bucket);
      const byId = new Map<string, LayoutNode>();
      for (const set of sets) for (const n of set) if (!byId.has(n.id)) byId.set(n.id, n);
      const nodes = [...byId.values()];
      // The same objects in the sets and the targets, so the quorum can count acknowledgements by identity.
      const quorum = sets.length === 1 ? majority(nodes.length) : majorityOfEach(sets.map((s) => s.map((n) => byId.get(n.id)!)));
      const need = sets.length === 1 ? `${majority(nodes.length)}` : `a majority of each of ${sets.map((s) => `[${s.map((n) => n.id).join(', ')}]`).join(' and ')}`;
      const out = await untilEnough(nodes, quorum, (n) => this.applyOn(n, records).catch((e: Error) => {
        if (!isPeerFailure(e)) this.log.warn('metadata replica write failed', { node: n.id, bucket, error: e.message });
        throw e;
      }), (acked, failed) => new QuorumError(
        `metadata of bucket ${bucket} reached ${acked.length} of ${nodes.length} replicas, ${need} needed (${failed.map((f) => `${f.target.id}: ${f.error.message}`).join('; ')})`,
        acked.length, majority(nodes.length),
      ), onLateMiss && ((n, e) => onLateMiss(n, e.message)));
      return { acked: out.acked.map((n) => n.id), missed: out.failed.map((f) => ({ node: f.target, error: f.error.message })) };
    } finally {
      end?.();
    }
  }

  /**
   * The versions of one key, merged from a majority of replicas (newest first, isLatest on the first).
   * Replicas that answered with older records get the winners back (read repair, in the background).
   */
  async readKey(bucket: string, key: string): Promise<ObjectVersion[]> {
    return (await this.readKeyRecords(bucket, key)).versions;
  }

  /** readKey, with the winning record of every version id (tombstones included) to apply locally. */
  async readKeyRecords(bucket: string, key: string): Promise<ReturnType<typeof mergeKeyRecords>> {
    const nodes = this.readReplicas(bucket);
    const need = majority(nodes.length);
    const answers = await this.gather(nodes, need, (n) => this.keyOn(n, bucket, key), `key ${bucket}/${key}`);
    const merged = mergeKeyRecords(answers.map((a) => a.value.records));
    this.readRepair(bucket, key, answers, merged.winners);
    return merged;
  }

  /**
   * Brings this node's records of a bucket up to date from a majority of its replicas: compares the
   * digests of their 256 leaves with ours and fetches the keys of the leaves that differ. Returns how
   * many records were taken. Throws QuorumError when fewer than a majority (this node counting if it
   * is a replica) could be compared.
   */
  async pullBucket(bucket: string, local: MetaReplica, apply: (records: VersionRecord[]) => Promise<void>, from?: LayoutNode[]): Promise<number> {
    const nodes = from ?? this.readReplicas(bucket);
    const need = majority(nodes.length);
    const selfIsReplica = nodes.some((n) => n.id === this.layout.nodeId);
    const others = nodes.filter((n) => n.id !== this.layout.nodeId);
    const mine = local.digests(bucket).leaves;
    let taken = 0;
    const answers = await this.gather(others, Math.max(0, need - (selfIsReplica ? 1 : 0)), async (n) => {
      const theirs = await this.rpc.call<{ leaves: string[] }>(peerOf(n), 'POST', META_PATHS.digests, { bucket }, { timeoutMs: this.timeoutMs });
      const differing: number[] = [];
      for (let leaf = 0; leaf < 256; leaf++) if (theirs.leaves[leaf] !== mine[leaf]) differing.push(leaf);
      if (differing.length > 0) {
        // All differing leaves in one call: the replica scans the bucket once, not once per leaf.
        const recs = await this.rpc.call<{ records: { key: string; versionId: string; updatedTs: number }[] }>(peerOf(n), 'POST', META_PATHS.leaf, { bucket, leaves: differing }, { timeoutMs: this.timeoutMs });
        const keys = new Set<string>();
        for (const r of recs.records) {
          const held = local.recordTs(bucket, r.key, r.versionId);
          if (held === undefined || held.updatedTs < r.updatedTs) keys.add(r.key);
        }
        for (const key of keys) {
          const got = await this.keyOn(n, bucket, key);
          const records: VersionRecord[] = got.records.map((r) => ({ bucket, key, versionId: r.versionId, updatedTs: r.updatedTs, version: r.version }));
          await apply(records);
          taken += records.length;
        }
      }
      return true;
    }, `digests of bucket ${bucket}`);
    void answers;
    return taken;
  }

  /** Runs `fn` on every node; resolves with the first `need` successes, or throws QuorumError. */
  /**
   * Runs `fn` on `need` of the nodes, nearest first (this node, then live nodes of its own site, then
   * other live nodes, nodes marked down last), starting the next one each time one fails; resolves with
   * the first `need` successes, or throws QuorumError once they cannot be had. Asking only as many
   * replicas as the quorum needs halves the RPCs of a read; a replica left out is caught up by the
   * anti-entropy pass.
   */
  private gather<T>(nodes: LayoutNode[], need: number, fn: (n: LayoutNode) => Promise<T>, what: string): Promise<{ node: LayoutNode; value: T }[]> {
    const ok: { node: LayoutNode; value: T }[] = [];
    const failed: string[] = [];
    let settled = false;
    if (need <= 0) return Promise.resolve([]);
    if (nodes.length < need) return Promise.reject(new QuorumError(`${what}: ${nodes.length} replicas, ${need} needed`, 0, need));
    const ownSite = this.layout.self?.site;
    const rank = (n: LayoutNode): number => (n.id === this.layout.nodeId ? 0 : (this.rpc.health.isUp(n.id) ? 1 : 3) + (n.site === ownSite ? 0 : 1));
    const pending = [...nodes].sort((a, b) => rank(a) - rank(b));
    let running = 0;
    return new Promise((resolve, reject) => {
      const launch = (): void => {
        const n = pending.shift();
        if (n === undefined) return;
        running++;
        fn(n).then((value) => {
          running--;
          if (settled) return;
          ok.push({ node: n, value });
          if (ok.length >= need) {
            settled = true;
            resolve(ok);
          }
        }, (e: Error) => {
          running--;
          if (settled) return;
          failed.push(`${n.id}: ${e.message}`);
          if (ok.length + running + pending.length < need) {
            settled = true;
            reject(new QuorumError(`read of ${what} reached ${ok.length} of ${nodes.length} replicas, ${need} needed (${failed.join('; ')})`, ok.length, need));
            return;
          }
          launch();
        });
      };
      for (let i = 0; i < need; i++) launch();
    });
  }


  private readRepair(bucket: string, key: string, answers: { node: LayoutNode; value: KeyRecordsReply }[], winners: { versionId: string; updatedTs: number; version?: ObjectVersion }[]): void {
    for (const a of answers) {
      const held = new Map(a.value.records.map((r) => [r.versionId, r.updatedTs]));
      const behind = winners.filter((w) => (held.get(w.versionId) ?? -1) < w.updatedTs);
      if (behind.length === 0) continue;
      const records: VersionRecord[] = behind.map((w) => ({ bucket, key, versionId: w.versionId, updatedTs: w.updatedTs, version: w.version }));
      this.applyOn(a.node, records).catch((e: Error) => this.log.debug('read repair failed', { node: a.node.id, bucket, error: e.message }));
    }
  }

  private applyOn(n: LayoutNode, records: VersionRecord[]): Promise<unknown> {
    if (n.id === this.layout.nodeId) return this.local.apply(records);
    return this.rpc.call(peerOf(n), 'POST', META_PATHS.apply, { records }, { timeoutMs: this.timeoutMs });
  }

  private async keyOn(n: LayoutNode, bucket: string, key: string): Promise<KeyRecordsReply> {
    if (n.id === this.layout.nodeId) return this.local.keyRecords(bucket, key);
    return this.rpc.call<KeyRecordsReply>(peerOf(n), 'POST', META_PATHS.key, { bucket, key }, { timeoutMs: this.timeoutMs });
  }
}
