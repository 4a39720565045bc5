/**
 * A bounded in-flight limit with a bounded wait queue: the per-peer back-pressure of the client.
 * `acquire` resolves with a release function, or rejects at once when the queue is full, or
 * when the wait exceeds `waitMs`. The release function is idempotent.
 */
export class GateFullError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GateFullError';
  }
}

interface Waiter {
  grant: (release: () => void) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class Gate {
  private active = 0;
  private readonly waiters: Waiter[] = [];

  constructor(readonly maxActive: number, readonly maxQueued: number) {
    if (!(maxActive >= 1) || !(maxQueued >= 0)) throw new RangeError('invalid gate bounds');
  }

  get inFlight(): number {
    return this.active;
  }

  get queued(): number {
    return this.waiters.length;
  }

  acquire(waitMs: number): Promise<() => void> {
    if (this.active < this.maxActive) {
      this.active += 1;
      return Promise.resolve(this.releaser());
    }
    if (this.waiters.length >= this.maxQueued) {
      return Promise.reject(new GateFullError(`${this.active} in flight and ${this.waiters.length} queued`));
    }
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        grant: resolve,
        reject,
        timer: setTimeout(() => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(new GateFullError(`waited ${waitMs} ms for a slot`));
        }, waitMs),
      };
      this.waiters.push(w);
    });
  }

  /** Rejects every waiter (used on close). */
  rejectAll(err: Error): void {
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(err);
    }
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      if (next !== undefined) {
        // The slot passes straight to the next waiter: `active` stays the same.
        clearTimeout(next.timer);
        next.grant(this.releaser());
      } else {
        this.active -= 1;
        if (this.active < 0) throw new Error('gate released more often than acquired');
      }
    };
  }
}
