import { constants as fsConstants, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';

/** fsync(2) of an open file. A wrapper so that there is one place to spy on, and one name in stack traces. */
export async function fsyncFile(fh: FileHandle): Promise<void> {
  await fh.sync();
}

export interface CoalescingSyncOptions {
  /** Open with O_DIRECTORY, so that a path that is not a directory fails loudly. */
  isDirectory?: boolean;
  /** The fsync to run; tests inject a counting or slow one. Default: fsyncFile. */
  fsync?: (fh: FileHandle) => Promise<void>;
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (e: unknown) => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * Group commit for one file or directory: many callers, few fsyncs.
 *
 * `sync()` resolves once an fsync that started after the call has completed. While an fsync is in flight,
 * every new caller waits for the single next one, so at most one fsync is in flight and one pending,
 * whatever the number of callers.
 *
 * One fd is kept open on `path`. If the file is replaced by another inode (deleted and recreated), the fd
 * still points at the old one: make a new CoalescingSync then.
 *
 * An fsync failure is sticky: every later sync() fails with it. After a failed fsync, Linux may drop the
 * dirty pages and report success on the next fsync, so a retry would claim durability it does not have.
 */
export class CoalescingSync {
  readonly path: string;
  private readonly isDirectory: boolean;
  private readonly fsyncFn: (fh: FileHandle) => Promise<void>;
  private fh: Promise<FileHandle> | undefined;
  private inFlight: Promise<void> | undefined;
  private next: Deferred | undefined;
  private failure: unknown;
  private closed = false;

  constructor(filePath: string, opts: CoalescingSyncOptions = {}) {
    this.path = filePath;
    this.isDirectory = opts.isDirectory ?? false;
    this.fsyncFn = opts.fsync ?? fsyncFile;
  }

  sync(): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`CoalescingSync for ${this.path} is closed`));
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.inFlight === undefined) return this.start();
    // An fsync is running but may have started before our caller's writes: wait for the next one.
    this.next ??= deferred();
    return this.next.promise;
  }

  /** Waits for the fsyncs already asked for, then closes the fd. Later sync() calls fail. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.inFlight !== undefined) await this.inFlight.catch(() => undefined);
    const fh = this.fh;
    this.fh = undefined;
    if (fh !== undefined) await (await fh.catch(() => undefined))?.close();
  }

  /** True while an fsync runs or waits; the directory cache keeps such entries. */
  get busy(): boolean {
    return this.inFlight !== undefined;
  }

  private start(): Promise<void> {
    const run = this.runOnce().finally(() => {
      this.inFlight = undefined;
      const waiting = this.next;
      this.next = undefined;
      // Started synchronously here, so no caller can slip in a second concurrent fsync.
      if (waiting !== undefined) {
        if (this.failure !== undefined) waiting.reject(this.failure);
        else this.start().then(waiting.resolve, waiting.reject);
      }
    });
    this.inFlight = run;
    return run;
  }

  private async runOnce(): Promise<void> {
    const fh = await this.handle();
    try {
      await this.fsyncFn(fh);
    } catch (e) {
      this.failure = e;
      throw e;
    }
  }

  private handle(): Promise<FileHandle> {
    if (this.fh === undefined) {
      const flags = this.isDirectory ? fsConstants.O_RDONLY | fsConstants.O_DIRECTORY : fsConstants.O_RDONLY;
      const opening = fsp.open(this.path, flags);
      this.fh = opening;
      // A failed open is not sticky (the file may not exist yet): the next sync() tries again.
      opening.catch(() => {
        if (this.fh === opening) this.fh = undefined;
      });
    }
    return this.fh;
  }
}

// ---- process-wide directory fsync --------------------------------------------------------------------

/** Open directory fds kept for coalescing; beyond this, directories are synced with a one-off fd. */
const DIR_SYNC_MAX_ENTRIES = 1024;
/** A directory not synced for this long has its fd closed. */
const DIR_SYNC_IDLE_MS = 30_000;

interface DirSyncEntry {
  sync: CoalescingSync;
  users: number;
  lastUsedMs: number;
}

/** Least recently used first (Map keeps insertion order; a use re-inserts). */
const dirSyncs = new Map<string, DirSyncEntry>();
let idleSweep: NodeJS.Timeout | undefined;

/**
 * fsync of a directory (after a rename or create in it), coalesced across the whole process: concurrent
 * callers for the same directory share fsyncs. Resolves after an fsync that started after the call.
 */
export async function dirSync(dir: string): Promise<void> {
  const key = path.resolve(dir);
  let entry = dirSyncs.get(key);
  if (entry === undefined) {
    if (dirSyncs.size >= DIR_SYNC_MAX_ENTRIES) evictIdle();
    if (dirSyncs.size >= DIR_SYNC_MAX_ENTRIES) return syncOnce(key);
    entry = { sync: new CoalescingSync(key, { isDirectory: true }), users: 0, lastUsedMs: Date.now() };
    startIdleSweep();
  } else {
    dirSyncs.delete(key);
  }
  dirSyncs.set(key, entry);
  entry.users++;
  try {
    await entry.sync.sync();
  } catch (e) {
    // A directory fsync that failed is dropped so that the next rename in it gets a fresh fd and a fresh
    // fsync (which fails too if the filesystem's journal is gone). Its own caller still sees the error.
    if (dirSyncs.get(key) === entry) dirSyncs.delete(key);
    void entry.sync.close().catch(() => undefined);
    throw e;
  } finally {
    entry.users--;
    entry.lastUsedMs = Date.now();
  }
}

/** Number of directory fds kept open (for tests and metrics). */
export function dirSyncOpenCount(): number {
  return dirSyncs.size;
}

/** Closes every cached directory fd (shutdown, tests). */
export async function closeDirSyncs(): Promise<void> {
  const entries = [...dirSyncs.values()];
  dirSyncs.clear();
  stopIdleSweepIfEmpty();
  await Promise.all(entries.map((e) => e.sync.close().catch(() => undefined)));
}

async function syncOnce(dir: string): Promise<void> {
  const s = new CoalescingSync(dir, { isDirectory: true });
  try {
    await s.sync();
  } finally {
    await s.close();
  }
}

/** Closes the least recently used entry that nobody is waiting on. */
function evictIdle(): void {
  for (const [key, e] of dirSyncs) {
    if (e.users === 0 && !e.sync.busy) {
      dirSyncs.delete(key);
      void e.sync.close().catch(() => undefined);
      return;
    }
  }
}

function startIdleSweep(): void {
  if (idleSweep !== undefined) return;
  idleSweep = setInterval(() => {
    const cutoffMs = Date.now() - DIR_SYNC_IDLE_MS;
    for (const [key, e] of dirSyncs) {
      if (e.users === 0 && !e.sync.busy && e.lastUsedMs < cutoffMs) {
        dirSyncs.delete(key);
        void e.sync.close().catch(() => undefined);
      }
    }
    stopIdleSweepIfEmpty();
  }, DIR_SYNC_IDLE_MS);
  // Never keeps the process alive on its own.
  idleSweep.unref();
}

function stopIdleSweepIfEmpty(): void {
  if (dirSyncs.size === 0 && idleSweep !== undefined) {
    clearInterval(idleSweep);
    idleSweep = undefined;
  }
}
