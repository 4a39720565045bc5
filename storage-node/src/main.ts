import fs from 'node:fs';
import path from 'node:path';
import type { NodeConfig } from './config';
import { createLogger, Logger } from './util/logger';
import { MetaStore } from './meta/meta-store';
import { BlobStore } from './blocks/blob-store';
import { Scrubber } from './blocks/scrubber';
import { AuditLog } from './audit/audit-log';
import { NodeMetrics } from './admin/metrics';
import { startAdminServer, sendJson } from './admin/server';
import { bucketKeyRoutes } from './admin/bucket-key-routes';
import { Store } from './model/store';
import { LocalBlobs } from './model/blob-backend';
import { startS3Server } from './s3/server';
import { acquireDataDirLock, writeFileAtomic } from './util/files';
import { GridRuntime, startGrid } from './cluster/grid';
import { MetaReplica } from './cluster/meta-replica';
import { BlobReplica } from './cluster/blob-replica';
import { RepairQueue } from './cluster/repair-queue';
import { RepairExecutor } from './cluster/repair-executor';
import { ReplicatedBlobs } from './cluster/replicated-blobs';
import { BlobPlaces } from './cluster/blob-places';
import { GridStore } from './cluster/grid-store';
import { MetaQuorum } from './cluster/meta-quorum';
import { HybridClock } from './util/hlc';
import { Rebalancer } from './cluster/rebalance';
import { WriteEpochs } from './cluster/write-epochs';

export interface RunningNode {
  s3Port: number;
  adminPort: number;
  stop(reason: string): Promise<void>;
}

/** Format of <dataDir>/runtime.json, read by tests and the local runtime to find a started node. */
export interface RuntimeInfo {
  pid: number;
  nodeId: string;
  s3Port: number;
  adminPort: number;
  /** The peer RPC port, for a node that is part of a grid. */
  rpcPort?: number;
  startedAt: string;
}

const DRAIN_DEADLINE_MS = 10_000;

/** Wires one storage node: data volume, metadata, audit, S3 and admin listeners. Logs each step. */
export async function runNode(cfg: NodeConfig, log: Logger = createLogger({ level: cfg.log.level, format: cfg.log.format, base: { component: 'storage-node', node: cfg.node.id } })): Promise<RunningNode> {
  const startedMs = Date.now();
  log.info('node starting', { dataDir: cfg.dataDir, site: cfg.node.site });
  fs.mkdirSync(cfg.dataDir, { recursive: true });
  const releaseLock = acquireDataDirLock(cfg.dataDir);

  fs.mkdirSync(path.join(cfg.dataDir, 'meta'), { recursive: true });
  const meta = MetaStore.open(path.join(cfg.dataDir, 'meta', 'meta.db'), { logger: log });
  log.info('metadata opened', { volumeId: meta.volumeId, formatVersion: meta.formatVersion });
  for (const k of cfg.accessKeys) {
    meta.upsertAccessKey({ ...k, createdMs: meta.getAccessKey(k.accessKeyId)?.createdMs ?? Date.now() });
  }
  await meta.sync();
  log.info('access keys loaded', { count: cfg.accessKeys.length });

  const blobs = await BlobStore.open(path.join(cfg.dataDir, 'blobs'), { chunkSizeBytes: cfg.storage.chunkSizeBytes, logger: log, fsync: cfg.storage.fsync });
  const audit = await AuditLog.open(path.join(cfg.dataDir, 'audit'), { logger: log, fsyncIntervalMs: cfg.audit.fsyncIntervalMs, segmentMaxBytes: cfg.audit.segmentMaxBytes });
  log.info('audit log opened', { headHash: audit.headHash });
  const metrics = new NodeMetrics();
  blobs.onCorrupt = (id, chunkIndex) => {
    metrics.corruptRead();
    log.error('corrupt chunk on read', { blobId: id, chunkIndex });
  };
  const scrubber = new Scrubber(blobs, {
    bytesPerSecond: cfg.scrub.bytesPerSecond,
    intervalMs: cfg.scrub.intervalSeconds * 1000,
    logger: log,
    // Blobs are written in place: a file a crash left without its footer is the orphan sweep's, not a corruption.
    // In a grid the metadata referencing a copy is on other nodes: every complete blob is checked.
    isReferenced: (id) => cfg.grid !== undefined || meta.isBlobReferenced(id),
    onCorrupt: (id, badChunks) => {
      metrics.scrubCorrupt(1);
      log.error('scrub found corrupt blob', { blobId: id, badChunks });
      // In a grid the copy is replaced from a good one: the object it belongs to says where those are.
      queueCorrupt?.(id);
    },
    onProgress: (p) => metrics.scrubProgress(p.scannedBytes, p.scannedBlobs),
    onPassFinished: (r) => {
      if (!r.stopped) metrics.scrubPassFinished(r.finishedMs);
    },
  });

  let stopping = false;
  let usage: { usedBytes: number; blobs: number; measuredAt: string } | undefined;
  let queueCorrupt: ((id: string) => void) | undefined;
  const places = cfg.grid ? BlobPlaces.open(path.join(cfg.dataDir, 'meta', 'places.db')) : undefined;
  // The replica side of metadata replication; blobs a replaced record no longer uses are freed.
  const metaReplica = new MetaReplica(meta, (ids) => {
    for (const id of ids) {
      blobs.delete(id).then(() => places?.forget(id), (e: Error) => log.warn('blob delete failed', { blobId: id, error: e.message }));
    }
  });
  const grid: GridRuntime | undefined = cfg.grid ? await startGrid(cfg, cfg.grid, log, { routes: [...metaReplica.routes(), ...new BlobReplica(blobs, log, places).routes()] }) : undefined;
  // Owed copies survive restarts (docs/decisions/0012-repair-queue.md); a peer that comes back up gets
  // its copies at once rather than after the back-off.
  const executor = grid ? new RepairExecutor(grid.layout, grid.rpc, blobs, log, places, (b) => meta.getBucket(b)?.policy) : undefined;
  const repair = grid ? await RepairQueue.open(path.join(cfg.dataDir, 'meta', 'repair.db'), {
    logger: log, isTargetUp: (id) => id === cfg.node.id || grid.rpc.health.isUp(id), execute: executor!.execute,
  }) : undefined;
  if (grid && repair) {
    grid.rpc.health.onChange((peer, up) => {
      if (up) repair.kick(peer);
    });
    repair.start();
  }
  // Stand-alone, every blob is on this node; in a grid, copies go where the layout places them.
  // In a grid, metadata is made current from the replicas before a request and written to a majority
  // of them before the answer (GridStore); buckets are kept on every node.
  const clock = new HybridClock();
  clock.observe(meta.maxTimestamp());
  let gridStore: GridStore | undefined;
  let rebalancer: Rebalancer | undefined;
  if (grid && repair) {
    const epochs = new WriteEpochs();
    const quorum = new MetaQuorum(grid.layout, grid.rpc, metaReplica, { logger: log, epochs });
    const replicated = new ReplicatedBlobs(grid.layout, grid.rpc, blobs, repair, { logger: log, epochs }, places);
    gridStore = new GridStore(meta, replicated, clock, { grid, quorum, replica: metaReplica, logger: log });
    const gs = gridStore;
    rebalancer = new Rebalancer({
      layout: grid.layout, membership: grid.membership, rpc: grid.rpc, blobs, places: places!, epochs, dataDir: cfg.dataDir,
      bucketNames: () => meta.listBuckets().map((b) => b.name),
      policyOf: (b) => meta.getBucket(b)?.policy,
      pullBucket: (b, from) => gs.pullBucketFrom(b, from),
      owedItems: () => repair.stats().owedItems,
    }, { ...cfg.grid!.rebalance, logger: log });
    grid.addRoutes(rebalancer.routes());
    queueCorrupt = (id) => {
      const place = places?.get(id);
      if (!place) return void log.warn('corrupt blob has no known object; it is repaired when a read meets it', { blobId: id });
      replicated.queueCheck(cfg.node.id, { id, size: 0 }, { ...place, policy: meta.getBucket(place.bucket)?.policy }, 'scrubber found it corrupt');
    };
    grid.addRoutes(gridStore.routes());
    gridStore.start();
    rebalancer?.start();
  }
  const store = gridStore ?? new Store(meta, new LocalBlobs(blobs), log, clock);
  const gridUnavailable = (): string | undefined => grid?.unavailable() ?? gridStore?.catchingUp();
  // A request that reaches a node still taking the grid's buckets and keys waits a little for it
  // (the first pass runs as soon as the layout arrives) rather than failing at once.
  const whenAvailable = gridStore ? (): Promise<void> => (grid?.unavailable() !== undefined ? Promise.resolve() : gridStore!.whenCaughtUp(5_000)) : undefined;
  if (grid) log.info('rpc listening', { host: cfg.grid!.rpc.host, port: grid.rpcPort, layoutVersion: grid.layout.version });
  const s3 = await startS3Server(
    { store, log, region: cfg.s3.region, domains: cfg.s3.domains, unavailable: grid ? gridUnavailable : undefined, whenAvailable },
    cfg.s3, audit, metrics, log,
  );
  log.info('s3 listening', { host: cfg.s3.host, port: s3.port });
  const admin = await startAdminServer({
    host: cfg.admin.host, port: cfg.admin.port, token: cfg.admin.token, metrics, logger: log,
    routes: [{
      method: 'GET', path: '/v1/status', auth: true,
      // What an operator or auditor checks first; the audit head hash lets them anchor the chain elsewhere.
      handler: async (_req, res) => sendJson(res, 200, {
        nodeId: cfg.node.id, site: cfg.node.site, volumeId: meta.volumeId, metadataFormatVersion: meta.formatVersion,
        uptimeSeconds: Math.round((Date.now() - startedMs) / 1000),
        audit: { headHash: audit.headHash, overloaded: audit.overloaded },
        scrub: scrubber.stats,
        grid: grid?.status(),
        repair: repair ? { ...repair.stats(), ...executor!.progress } : undefined,
        antiEntropy: gridStore?.antiEntropy,
        rebalance: rebalancer?.status(),
        storage: usage,
      }),
    }, ...(grid?.adminRoutes() ?? []),
    ...bucketKeyRoutes({ store, region: cfg.s3.region, layout: grid && (() => grid.layout.current), unavailable: grid && gridUnavailable, whenAvailable })],
    // Ready = serves S3 (what a load balancer needs): in a grid, once the node holds a layout listing it
    // and knows the grid's buckets and keys. /health says the process is up (what a runtime waits for
    // before it adds the node to the layout).
    isReady: () => {
      if (stopping) return { ready: false, reason: 'stopping' };
      if (audit.overloaded) return { ready: false, reason: 'audit log behind' };
      const why = gridUnavailable();
      return why === undefined ? { ready: true } : { ready: false, reason: why };
    },
  });
  log.info('admin listening', { host: cfg.admin.host, port: admin.port });

  if (cfg.scrub.enabled) scrubber.start();
  // Capacity used, for status pages: one walk of the blob tree now and every 30 s, not per request.
  const measure = (): void => {
    blobs.usedBytes().then((u) => { usage = { usedBytes: u.bytes, blobs: u.blobs, measuredAt: new Date().toISOString() }; },
      (e: Error) => log.warn('capacity measurement failed', { error: e.message }));
  };
  measure();
  const usageTimer = setInterval(measure, 30_000);
  usageTimer.unref();
  // Blobs older than this process that nothing references are crash leftovers (renamed, never committed).
  // In a grid, the metadata that references a copy lives on the bucket's metadata replicas, not
  // necessarily here: a local sweep would delete good copies. Grid garbage collection asks the
  // replicas (not built yet), so a grid node keeps its unreferenced blobs for now.
  if (!grid) void store.sweepOrphanBlobs(blobs, startedMs, () => stopping).catch((e: Error) => log.warn('orphan sweep failed', { error: e.message }));

  const info: RuntimeInfo = {
    pid: process.pid, nodeId: cfg.node.id, s3Port: s3.port, adminPort: admin.port, rpcPort: grid?.rpcPort, startedAt: new Date().toISOString(),
  };
  writeFileAtomic(path.join(cfg.dataDir, 'runtime.json'), JSON.stringify(info));
  log.info('node ready', { s3Port: s3.port, adminPort: admin.port, startupMs: Date.now() - startedMs });

  return {
    s3Port: s3.port,
    adminPort: admin.port,
    stop: async (reason: string) => {
      if (stopping) return;
      stopping = true;
      log.info('node stopping', { reason });
      await s3.close(DRAIN_DEADLINE_MS);
      gridStore?.stop();
      rebalancer?.stop();
      clearInterval(usageTimer);
      await grid?.stop(DRAIN_DEADLINE_MS);
      await repair?.close();
      places?.close();
      await scrubber.stop();
      await admin.close();
      await audit.close();
      await meta.sync();
      meta.close();
      releaseLock();
      log.info('node stopped', { reason });
    },
  };
}
