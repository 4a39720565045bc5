// Writes in flight, by the layout version they chose their targets under. A node says it has moved
// to a layout version (its "ack") only once no write it started under an older version is still
// running: from then on every copy and record it writes reaches the new owners too
// (docs/decisions/0016-layout-transitions.md).

export class WriteEpochs {
  private readonly running = new Map<number, number>();

  /** Registers a write started under `version`; call the returned function once, when it is over. */
  begin(version: number): () => void {
    this.running.set(version, (this.running.get(version) ?? 0) + 1);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const n = (this.running.get(version) ?? 1) - 1;
      if (n <= 0) this.running.delete(version);
      else this.running.set(version, n);
    };
  }

  /** The oldest version a running write uses, or undefined when none runs. */
  oldest(): number | undefined {
    let min: number | undefined;
    for (const v of this.running.keys()) if (min === undefined || v < min) min = v;
    return min;
  }

  /** The version this node has fully moved to: its current one, or older while older writes run. */
  ack(current: number): number {
    const o = this.oldest();
    return o === undefined ? current : Math.min(o, current);
  }
}
