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

/**
 * Holds the newest valid layout this node has seen. `apply()` writes it to `<dataDir>/layout.json`
 * (fsync of file and folder) before it takes effect, so a restarted node comes back with the layout
 * it last served under and never goes back to an older one. Emits 'change' (layout, previous) after
 * each applied version.
 */
export class LayoutState extends EventEmitter {
  private layout: Layout | undefined;
  private warnings: string[] = [];
  private readonly file: string;
  private readonly log: Logger;

  constructor(dataDir: string, readonly nodeId: string, logger?: Logger) {
    super();
    this.file = path.join(dataDir, 'layout.json');
    this.log = logger ?? silentLogger();
    this.load();
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
    writeFileAtomic(this.file, JSON.stringify(copy));
    const previous = this.layout;
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
