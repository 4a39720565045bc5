// The layout a node holds: loaded at start, replaced only by a higher version, kept on disk.
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { checkLayout, Layout, LayoutNode } from '../layout/types';
import { writeFileAtomic } from '../util/files';
import { Logger, silentLogger } from '../util/logger';

/** A layout that cannot be used: the message lists every reason. */
export class LayoutRejectedError extends Error {
  constructor(readonly problems: string[]) {
    super(`layout refused: ${problems.join('; ')}`);
    this.name = 'LayoutRejectedError';
  }
}

export interface ApplyResult {
  /** The version held after the call (the offered one, or a higher one already held). */
  version: number;
  applied: boolean;
}

/** What a node keeps of a transition: the older layouts still in use, and the versions retired. */
export interface LayoutHistory {
  /** Every version below this one is retired: no read or write uses it any more. */
  retiredBelow: number;
  /** Older versions still in use, oldest first; all below the current version. */
  open: Layout[];
  /**
   * When equal to the current version: every node has copied in what that layout gives it, so reads
   * use its replicas, while writes still reach the older owners until every node reads this way.
   */
  readCurrentAt?: number;
}

/**
 * True when two layouts put data or metadata in different places: nodes (id, site, capacity, state),
 * sites' states, policies. Addresses alone do not count (a pod that moved keeps its data).
 */
export function placementDiffers(a: Layout, b: Layout): boolean {
  const key = (l: Layout): string => JSON.stringify([
    [...l.nodes].map((n) => [n.id, n.site, n.capacityBytes, n.state]).sort(),
    [...l.sites].map((s) => [s.name, s.state]).sort(),
    l.policies.map((p) => [p.name, p.match.buckets, p.match.prefixes ?? [], p.rules.map((r) => [r.site, r.copies])]),
    l.defaultPolicy,
  ]);
  return key(a) !== key(b);
}

/**
 * Holds the newest valid layout this node has seen. `apply()` writes it to `<dataDir>/layout.json`
 * (fsync of file and folder) before it takes effect, so a restarted node comes back with the layout
 * it last served under and never goes back to an older one. Emits 'change' (layout, previous) after
 * each applied version.
 */
export class LayoutState extends EventEmitter {
  private layout: Layout | undefined;
  private warnings: string[] = [];
  private history: LayoutHistory = { retiredBelow: 0, open: [] };
  private readonly file: string;
  private readonly historyFile: string;
  private readonly log: Logger;

  constructor(dataDir: string, readonly nodeId: string, logger?: Logger) {
    super();
    this.file = path.join(dataDir, 'layout.json');
    this.historyFile = path.join(dataDir, 'layout-history.json');
    this.log = logger ?? silentLogger();
    this.load();
    this.loadHistory();
  }

  /**
   * Older layouts still in use, oldest first (docs/decisions/0016-layout-transitions.md): while a
   * transition is open, writes go to the owners under every one of them and reads look everywhere.
   */
  get open(): readonly Layout[] {
    return this.history.open;
  }

  get retiredBelow(): number {
    return this.history.retiredBelow;
  }

  /** What travels with a layout between nodes (a copy). */
  get historyRecord(): LayoutHistory {
    return { ...this.history, open: [...this.history.open] };
  }

  /** The layouts in use: the open older ones, then the current one (empty without a layout). */
  get inUse(): Layout[] {
    return this.layout === undefined ? [] : [...this.history.open, this.layout];
  }

  /**
   * The layout whose metadata replicas reads ask: the oldest in use (its replicas hold every
   * acknowledged write), or the current one once every node has synced to it.
   */
  get oldest(): Layout | undefined {
    if (this.layout !== undefined && this.history.readCurrentAt === this.layout.version) return this.layout;
    return this.history.open[0] ?? this.layout;
  }

  /** True once reads use the current layout's replicas (see LayoutHistory.readCurrentAt). */
  get readsCurrent(): boolean {
    return this.layout !== undefined && (this.history.open.length === 0 || this.history.readCurrentAt === this.layout.version);
  }

  /** Every node has synced to the current version: reads move to its replicas. */
  readCurrent(): void {
    if (this.layout === undefined || this.history.readCurrentAt === this.layout.version) return;
    this.setHistory({ ...this.history, readCurrentAt: this.layout.version });
    this.log.info('reads use the current layout', { version: this.layout.version, open: this.history.open.map((l) => l.version) });
  }

  /**
   * Takes older layouts a peer still uses and this node does not know (a node that joined late, or
   * that restarted from an old file), and the peer's retirement point. Returns true if anything changed.
   */
  mergeHistory(peer: LayoutHistory): boolean {
    if (this.layout === undefined) return false;
    const retiredBelow = Math.min(Math.max(this.history.retiredBelow, peer.retiredBelow), this.layout.version);
    let open = this.history.open.filter((l) => l.version >= retiredBelow);
    for (const l of peer.open ?? []) {
      if (l.version < retiredBelow || l.version >= this.layout.version || open.some((o) => o.version === l.version)) continue;
      if (l.partitionCount !== this.layout.partitionCount || checkLayout(l).errors.length > 0) continue;
      open.push(JSON.parse(JSON.stringify(l)) as Layout);
    }
    open = open.sort((a, b) => a.version - b.version);
    const readCurrentAt = Math.max(this.history.readCurrentAt ?? 0, peer.readCurrentAt ?? 0) || undefined;
    const changed = retiredBelow !== this.history.retiredBelow || open.length !== this.history.open.length || readCurrentAt !== this.history.readCurrentAt;
    if (!changed) return false;
    this.setHistory({ retiredBelow, open, readCurrentAt });
    return true;
  }

  /** Retires every version below `version` (all nodes are done with them). */
  retireBelow(version: number): boolean {
    if (this.layout === undefined || version <= this.history.retiredBelow) return false;
    const below = Math.min(version, this.layout.version);
    const dropped = this.history.open.filter((l) => l.version < below).map((l) => l.version);
    this.setHistory({ ...this.history, retiredBelow: below, open: this.history.open.filter((l) => l.version >= below) });
    if (dropped.length > 0) this.log.info('layout versions retired', { retired: dropped, version: this.layout.version });
    return true;
  }

  private setHistory(h: LayoutHistory): void {
    writeFileAtomic(this.historyFile, JSON.stringify(h));
    this.history = h;
    this.emit('history', h);
  }

  get current(): Layout | undefined {
    return this.layout;
  }

  get version(): number {
    return this.layout?.version ?? 0;
  }

  /** Capacity shortfalls of the current layout (policies that cannot get all their copies). */
  get degraded(): readonly string[] {
    return this.warnings;
  }

  /** This node's entry in the current layout, if it is in it. */
  get self(): LayoutNode | undefined {
    return this.layout?.nodes.find((n) => n.id === this.nodeId);
  }

  node(id: string): LayoutNode | undefined {
    return this.layout?.nodes.find((n) => n.id === id);
  }

  /**
   * Takes `next` if its version is higher than the one held. A layout with structural errors is
   * refused with LayoutRejectedError whatever its version; an equal or lower version is ignored.
   */
  apply(next: Layout): ApplyResult {
    const { errors, warnings } = checkLayout(next);
    if (errors.length > 0) throw new LayoutRejectedError(errors);
    if (this.layout !== undefined && next.version <= this.layout.version) {
      return { version: this.layout.version, applied: false };
    }
    if (this.layout !== undefined && next.partitionCount !== this.layout.partitionCount) {
      throw new LayoutRejectedError([`partitionCount cannot change (held ${this.layout.partitionCount}, offered ${next.partitionCount})`]);
    }
    // A copy, so that the caller cannot change what we hold.
    const copy = JSON.parse(JSON.stringify(next)) as Layout;
    const previous = this.layout;
    // The version being replaced stays in use until every node has its data where the new one wants it.
    // Written before layout.json: a crash in between leaves an open version equal to the current one,
    // which loading drops.
    if (previous !== undefined && placementDiffers(previous, copy)) {
      this.setHistory({ ...this.history, open: [...this.history.open, previous] });
    }
    writeFileAtomic(this.file, JSON.stringify(copy));
    this.layout = copy;
    this.warnings = warnings;
    this.log.info('layout applied', {
      version: copy.version, previousVersion: previous?.version ?? 0, nodes: copy.nodes.length,
      inLayout: this.self !== undefined, degraded: warnings.length,
    });
    for (const w of warnings) this.log.warn('layout policy degraded', { version: copy.version, problem: w });
    this.emit('change', copy, previous);
    return { version: copy.version, applied: true };
  }

  private loadHistory(): void {
    let text: string;
    try {
      text = fs.readFileSync(this.historyFile, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    const h = JSON.parse(text) as LayoutHistory;
    const current = this.layout?.version ?? 0;
    this.history = {
      readCurrentAt: Number.isSafeInteger(h.readCurrentAt) ? h.readCurrentAt : undefined,
      retiredBelow: Number.isSafeInteger(h.retiredBelow) ? h.retiredBelow : 0,
      open: (Array.isArray(h.open) ? h.open : []).filter((l) => l.version < current && checkLayout(l).errors.length === 0),
    };
    if (this.history.open.length > 0) this.log.info('layout transition resumed', { open: this.history.open.map((l) => l.version), version: current });
  }

  private load(): void {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    const parsed = JSON.parse(text) as Layout;
    const { errors, warnings } = checkLayout(parsed);
    // Written only after the same check: an invalid file is damage, not a state to start from.
    if (errors.length > 0) throw new LayoutRejectedError(errors.map((p) => `${this.file}: ${p}`));
    this.layout = parsed;
    this.warnings = warnings;
    this.log.info('layout loaded', { version: parsed.version, inLayout: this.self !== undefined });
  }
}
