import assert from 'node:assert/strict';
import winston from 'winston';
import { FakeClock } from './clock';
import { KubeApiError } from './kube-api';
import { Lease, LeaseClient, LeaseSpec, LeaderElector, LeaderElectionTiming, checkLeaderTiming, microTime } from './leader';

const silent = winston.createLogger({ silent: true, transports: [new winston.transports.Console()] });
const timing: LeaderElectionTiming = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

/** One Lease in memory with the API server's optimistic concurrency; each client can be cut off. */
class FakeLeaseStore {
  lease: Lease | undefined;
  private rv = 0;
  writes = 0;

  client(cutOff: () => boolean = () => false): LeaseClient {
    const check = (): void => {
      if (cutOff()) throw new Error('connect ECONNREFUSED');
    };
    const copy = (l: Lease): Lease => JSON.parse(JSON.stringify(l));
    return {
      description: 'ns/archipel-operator',
      get: async () => {
        check();
        return this.lease ? copy(this.lease) : undefined;
      },
      create: async (spec: LeaseSpec) => {
        check();
        if (this.lease) throw new KubeApiError(409, 'AlreadyExists', 'leases "archipel-operator" already exists');
        this.lease = { metadata: { name: 'archipel-operator', namespace: 'ns', resourceVersion: String(++this.rv) }, spec };
        this.writes++;
        return copy(this.lease);
      },
      update: async (lease: Lease) => {
        check();
        if (!this.lease || lease.metadata.resourceVersion !== this.lease.metadata.resourceVersion) {
          throw new KubeApiError(409, 'Conflict', 'the object has been modified');
        }
        this.lease = { ...copy(lease), metadata: { ...lease.metadata, resourceVersion: String(++this.rv) } };
        this.writes++;
        return copy(this.lease);
      },
    };
  }

  get holder(): string | undefined {
    return this.lease?.spec?.holderIdentity || undefined;
  }
}

interface Candidate {
  elector: LeaderElector;
  events: string[];
  /** Fake-clock times at which it started and stopped leading. */
  started: number[];
  stopped: number[];
  cutOff: boolean;
}

describe('LeaderElector', () => {
  let clock: FakeClock;
  let store: FakeLeaseStore;
  let candidates: Candidate[];

  const candidate = (identity: string): Candidate => {
    const c: Candidate = { events: [], started: [], stopped: [], cutOff: false } as unknown as Candidate;
    c.elector = new LeaderElector({
      identity,
      client: store.client(() => c.cutOff),
      timing,
      clock,
      log: silent,
      random: () => 0,
      callbacks: {
        onStartedLeading: () => {
          c.events.push('started');
          c.started.push(clock.now());
        },
        onStoppedLeading: (reason) => {
          c.events.push(`stopped: ${reason}`);
          c.stopped.push(clock.now());
        },
      },
    });
    candidates.push(c);
    return c;
  };

  const leaders = (): string[] => candidates.filter((c) => c.elector.isLeader).map((c) => c.elector.identity);

  beforeEach(() => {
    clock = new FakeClock();
    store = new FakeLeaseStore();
    candidates = [];
  });

  afterEach(async () => {
    for (const c of candidates) c.cutOff = true;
    await Promise.all(candidates.map((c) => c.elector.stop({ release: false })));
  });

  it('creates a missing Lease, leads, and renews it every retry period', async () => {
    const a = candidate('a');
    const t0 = clock.now();
    a.elector.start();
    await clock.advance(0);
    assert.deepEqual(a.events, ['started']);
    assert.equal(store.holder, 'a');
    assert.equal(store.lease!.spec!.leaseDurationSeconds, 15);
    assert.equal(store.lease!.spec!.leaseTransitions, 0);
    assert.equal(store.lease!.spec!.acquireTime, microTime(t0));
    await clock.advance(10_000);
    assert.equal(store.writes, 6, 'one create, then a renewal every 2 s');
    assert.equal(store.lease!.spec!.renewTime, microTime(t0 + 10_000));
    assert.equal(store.lease!.spec!.acquireTime, microTime(t0), 'renewals keep the acquire time');
    assert.match(store.lease!.spec!.renewTime!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    assert.deepEqual(a.events, ['started']);
  });

  it('lets only one of two replicas lead while the leader renews', async () => {
    const a = candidate('a');
    const b = candidate('b');
    a.elector.start();
    await clock.advance(0);
    b.elector.start();
    for (let i = 0; i < 60; i++) {
      await clock.advance(1_000);
      assert.deepEqual(leaders(), ['a']);
    }
    assert.deepEqual(b.events, []);
    assert.equal(b.elector.status().holder, 'a');
    assert.equal(b.elector.status().leading, false);
  });

  it('of two replicas starting together, one wins the create and the other stays standby', async () => {
    const a = candidate('a');
    const b = candidate('b');
    a.elector.start();
    b.elector.start();
    await clock.advance(30_000);
    assert.equal(leaders().length, 1);
    assert.equal(store.holder, leaders()[0]);
  });

  it('hands over at once when the leader releases the Lease on shutdown', async () => {
    const a = candidate('a');
    const b = candidate('b');
    a.elector.start();
    await clock.advance(0);
    b.elector.start();
    await clock.advance(5_000);
    await a.elector.stop({ release: true });
    assert.deepEqual(a.events, ['started', 'stopped: shutting down']);
    assert.equal(store.holder, undefined, 'released');
    const releasedAt = clock.now();
    await clock.advance(timing.retryPeriodMs);
    assert.deepEqual(leaders(), ['b']);
    assert.ok(b.started[0] - releasedAt <= timing.retryPeriodMs, 'took over at its next attempt, not after the lease duration');
    assert.equal(store.lease!.spec!.leaseTransitions, 1);
  });

  it('when the leader dies, the standby takes over once the Lease has not changed for the lease duration', async () => {
    const a = candidate('a');
    const b = candidate('b');
    a.elector.start();
    await clock.advance(0);
    b.elector.start();
    await clock.advance(7_000);
    const lastRenew = a.elector.status().lastRenewMs!;
    // SIGKILL: no more renewals, no release.
    await a.elector.stop({ release: false });
    await clock.advance(timing.leaseDurationMs - 4_000);
    assert.deepEqual(leaders(), [], 'not before the lease duration');
    await clock.advance(6_000);
    assert.deepEqual(leaders(), ['b']);
    const takeoverMs = b.started[0] - lastRenew;
    assert.ok(takeoverMs >= timing.leaseDurationMs, `took over ${takeoverMs} ms after the last renewal`);
    assert.ok(takeoverMs <= timing.leaseDurationMs + 2 * timing.retryPeriodMs, `took over ${takeoverMs} ms after the last renewal`);
    assert.equal(store.lease!.spec!.leaseTransitions, 1);
  });

  it('a leader cut off from the API steps down after the renew deadline, before anyone can take over', async () => {
    const a = candidate('a');
    const b = candidate('b');
    a.elector.start();
    await clock.advance(0);
    b.elector.start();
    await clock.advance(6_000);
    const lastRenew = a.elector.status().lastRenewMs!;
    a.cutOff = true;
    await clock.advance(timing.renewDeadlineMs - 1);
    assert.deepEqual(leaders(), ['a'], 'transient failures within the renew deadline keep it leading');
    await clock.advance(1);
    assert.deepEqual(a.events, ['started', `stopped: lease not renewed for ${timing.renewDeadlineMs} ms`]);
    assert.equal(a.stopped[0] - lastRenew, timing.renewDeadlineMs);
    await clock.advance(20_000);
    assert.deepEqual(leaders(), ['b']);
    assert.ok(b.started[0] > a.stopped[0], 'no overlap: b starts after a stopped');
    // Back on the network, a is a candidate again and stays standby.
    a.cutOff = false;
    await clock.advance(30_000);
    assert.deepEqual(leaders(), ['b']);
    assert.equal(a.elector.status().holder, 'b');
  });

  it('steps down on the deadline even when a renewal request hangs', async () => {
    let hang = false;
    const base = store.client();
    const hanging: LeaseClient = {
      ...base,
      get: () => (hang ? new Promise<never>(() => undefined) : base.get()),
    };
    const events: string[] = [];
    const elector = new LeaderElector({
      identity: 'a', client: hanging, timing, clock, log: silent, random: () => 0,
      callbacks: { onStartedLeading: () => events.push('started'), onStoppedLeading: (r) => events.push(`stopped: ${r}`) },
    });
    elector.start();
    await clock.advance(0);
    hang = true;
    await clock.advance(timing.renewDeadlineMs + timing.retryPeriodMs);
    assert.deepEqual(events, ['started', `stopped: lease not renewed for ${timing.renewDeadlineMs} ms`]);
    assert.equal(elector.isLeader, false);
  });

  it('a leader that recovers within the renew deadline keeps leading without a new transition', async () => {
    const a = candidate('a');
    a.elector.start();
    await clock.advance(0);
    a.cutOff = true;
    await clock.advance(7_000);
    a.cutOff = false;
    await clock.advance(4_000);
    assert.deepEqual(a.events, ['started']);
    assert.equal(store.lease!.spec!.leaseTransitions, 0);
  });

  it('stays standby when another writer changed the Lease between its read and its write (409)', async () => {
    await store.client().create({ holderIdentity: null, leaseTransitions: 4 });
    const base = store.client();
    const other = store.client();
    let raced = false;
    const racing: LeaseClient = {
      ...base,
      update: async (lease) => {
        if (!raced) {
          // x takes the free Lease after b read it and before b writes.
          raced = true;
          const current = (await other.get())!;
          await other.update({ ...current, spec: { holderIdentity: 'x', leaseDurationSeconds: 15, renewTime: microTime(clock.now()), leaseTransitions: 5 } });
        }
        return base.update(lease);
      },
    };
    const events: string[] = [];
    const b = new LeaderElector({
      identity: 'b', client: racing, timing, clock, log: silent, random: () => 0,
      callbacks: { onStartedLeading: () => events.push('started'), onStoppedLeading: (r) => events.push(`stopped: ${r}`) },
    });
    b.start();
    await clock.advance(0);
    assert.equal(raced, true);
    assert.equal(b.isLeader, false, 'the conflict means x won');
    assert.equal(store.holder, 'x');
    await clock.advance(10_000);
    assert.equal(b.isLeader, false, 'x holds a Lease b saw change less than 15 s ago');
    assert.equal(b.status().holder, 'x');
    await clock.advance(10_000);
    assert.equal(b.isLeader, true, 'x never renewed: b takes over after the lease duration');
    assert.equal(store.lease!.spec!.leaseTransitions, 6);
    await b.stop({ release: true });
    assert.equal(store.holder, undefined);
  });

  it('a leader that finds another holder in the Lease steps down at once', async () => {
    const a = candidate('a');
    a.elector.start();
    await clock.advance(0);
    // Someone rewrote the Lease by hand.
    const other = store.client();
    const lease = (await other.get())!;
    await other.update({ ...lease, spec: { ...lease.spec, holderIdentity: 'x', renewTime: microTime(clock.now()) } });
    await clock.advance(timing.retryPeriodMs);
    assert.deepEqual(a.events, ['started', 'stopped: the Lease is held by x']);
    assert.equal(a.elector.isLeader, false);
  });

  it('refuses timings where a leader could still lead after others may take over', () => {
    assert.throws(() => checkLeaderTiming({ leaseDurationMs: 10_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 }), /renew deadline/);
    assert.throws(() => checkLeaderTiming({ leaseDurationMs: 15_000, renewDeadlineMs: 2_000, retryPeriodMs: 2_000 }), /retry period/);
    assert.throws(() => checkLeaderTiming({ leaseDurationMs: 15_500, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 }), /whole seconds/);
    checkLeaderTiming(timing);
  });
});
