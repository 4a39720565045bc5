import assert from 'node:assert/strict';
import { OptionsError, operatorOptions } from './options';

describe('operator options', () => {
  it('defaults to every namespace, port 8080, leader election with client-go timings', () => {
    assert.deepEqual(operatorOptions({}), {
      kubeconfig: undefined,
      namespaces: [],
      metricsHost: '0.0.0.0',
      metricsPort: 8080,
      leaderElection: true,
      leaseName: 'archipel-operator',
      leaseNamespace: undefined,
      timing: { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 },
      workersPerKind: 2,
    });
  });

  it('takes namespaces repeated or comma-separated, once each', () => {
    assert.deepEqual(operatorOptions({ namespace: ['team-a', 'team-b,team-c', 'team-a'] }).namespaces, ['team-a', 'team-b', 'team-c']);
  });

  it('turns leader election off with --no-leader-election and reads short timings in seconds', () => {
    const o = operatorOptions({ leaderElection: false, leaseDuration: '6', renewDeadline: '4', retryPeriod: '0.5', metricsPort: '0' });
    assert.equal(o.leaderElection, false);
    assert.deepEqual(o.timing, { leaseDurationMs: 6_000, renewDeadlineMs: 4_000, retryPeriodMs: 500 });
    assert.equal(o.metricsPort, 0);
  });

  it('refuses bad values with a message naming the flag', () => {
    assert.throws(() => operatorOptions({ namespace: ['Team_A'] }), (e: Error) => e instanceof OptionsError && /--namespace "Team_A"/.test(e.message));
    assert.throws(() => operatorOptions({ metricsPort: '70000' }), /--metrics-port must be an integer from 0 to 65535/);
    assert.throws(() => operatorOptions({ workers: '0' }), /--workers/);
    assert.throws(() => operatorOptions({ leaseDuration: '5', renewDeadline: '10' }), /renew deadline .* < lease duration/);
    assert.throws(() => operatorOptions({ leaseDuration: 'soon' }), /--lease-duration must be a number of seconds/);
    assert.throws(() => operatorOptions({ leaseName: 'Bad Name' }), /--lease-name/);
  });
});
