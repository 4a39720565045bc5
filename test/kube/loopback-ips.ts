// Pod IPs from 127.0.0.0/8 (all loopback on Linux), one per pod, never 127.0.0.1.

export class LoopbackIpPool {
  private readonly inUse = new Set<string>();
  private cursor = 0;
  private static readonly size = 254 * 254;

  /** `prefix` is the first two octets, e.g. "127.77"; addresses are prefix.x.y with x,y in 1..254. */
  constructor(private readonly prefix: string) {
    const m = /^127\.(\d{1,3})$/.exec(prefix);
    if (!m || Number(m[1]) < 1 || Number(m[1]) > 254) throw new Error(`pod IP prefix must be 127.N with N in 1..254: ${prefix}`);
  }

  private at(index: number): string {
    return `${this.prefix}.${Math.floor(index / 254) + 1}.${(index % 254) + 1}`;
  }

  /**
   * Next free address after the last one handed out: like a CNI, recently freed addresses are
   * not reused at once, so a client of a deleted pod cannot reach its successor by accident.
   */
  allocate(): string {
    for (let n = 0; n < LoopbackIpPool.size; n++) {
      const ip = this.at(this.cursor);
      this.cursor = (this.cursor + 1) % LoopbackIpPool.size;
      if (!this.inUse.has(ip)) {
        this.inUse.add(ip);
        return ip;
      }
    }
    throw new Error('pod IP pool exhausted');
  }

  /** Takes a specific address of this pool if it is free; false otherwise. */
  reserve(ip: string): boolean {
    if (!ip.startsWith(`${this.prefix}.`) || this.inUse.has(ip)) return false;
    const [x, y] = ip.split('.').slice(2).map(Number);
    if (!(x >= 1 && x <= 254 && y >= 1 && y <= 254)) return false;
    this.inUse.add(ip);
    return true;
  }

  release(ip: string): void {
    this.inUse.delete(ip);
  }

  has(ip: string): boolean {
    return this.inUse.has(ip);
  }
}
