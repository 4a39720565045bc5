import assert from 'node:assert/strict';
import { parseLockConfiguration, lockConfigurationXml, parseRetention, retentionXml, parseLegalHold } from './lock';
import { parseXml, toXml } from './xml';
import { S3Error } from './error';
import type { BucketRecord } from '../meta/types';

const NS = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"';

function s3Code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof S3Error) return e.code;
    throw e;
  }
  return 'none';
}

const config = (inner: string): string => `<ObjectLockConfiguration${NS}>${inner}</ObjectLockConfiguration>`;
const lockConf = (xml: string): ReturnType<typeof parseLockConfiguration> => parseLockConfiguration(parseXml(xml, 'ObjectLockConfiguration'));
const rule = (inner: string): string => config(`<ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>${inner}</DefaultRetention></Rule>`);

function bucket(p: Partial<BucketRecord>): BucketRecord {
  return { name: 'b', owner: 'o', createdMs: 0, region: 'us-east-1', versioning: 'Enabled', objectLockEnabled: true, ...p };
}

describe('object lock configuration documents', () => {
  it('a default rule in days or in years is read as sent', () => {
    assert.deepEqual(lockConf(rule('<Mode>COMPLIANCE</Mode><Days>30</Days>')), { mode: 'COMPLIANCE', days: 30 });
    assert.deepEqual(lockConf(rule('<Mode>GOVERNANCE</Mode><Years>7</Years>')), { mode: 'GOVERNANCE', years: 7 });
  });

  it('a configuration without a rule enables lock with no default retention', () => {
    assert.equal(lockConf(config('<ObjectLockEnabled>Enabled</ObjectLockEnabled>')), undefined);
  });

  it('Days and Years together, or neither, are MalformedXML', () => {
    assert.equal(s3Code(() => lockConf(rule('<Mode>GOVERNANCE</Mode><Days>1</Days><Years>1</Years>'))), 'MalformedXML');
    assert.equal(s3Code(() => lockConf(rule('<Mode>GOVERNANCE</Mode>'))), 'MalformedXML');
  });

  it('a zero or negative period is InvalidArgument, a non-integer one MalformedXML', () => {
    assert.equal(s3Code(() => lockConf(rule('<Mode>GOVERNANCE</Mode><Days>0</Days>'))), 'InvalidArgument');
    assert.equal(s3Code(() => lockConf(rule('<Mode>GOVERNANCE</Mode><Years>-1</Years>'))), 'InvalidArgument');
    assert.equal(s3Code(() => lockConf(rule('<Mode>GOVERNANCE</Mode><Days>1.5</Days>'))), 'MalformedXML');
    assert.equal(s3Code(() => lockConf(rule('<Mode>GOVERNANCE</Mode><Days>ten</Days>'))), 'MalformedXML');
  });

  it('absurdly long default periods are refused', () => {
    assert.equal(s3Code(() => lockConf(rule('<Mode>GOVERNANCE</Mode><Days>36501</Days>'))), 'InvalidArgument');
    assert.equal(s3Code(() => lockConf(rule('<Mode>GOVERNANCE</Mode><Years>101</Years>'))), 'InvalidArgument');
    assert.deepEqual(lockConf(rule('<Mode>GOVERNANCE</Mode><Years>100</Years>')), { mode: 'GOVERNANCE', years: 100 });
  });

  it('an unknown mode, a missing mode or a status other than Enabled is MalformedXML', () => {
    assert.equal(s3Code(() => lockConf(rule('<Mode>governance</Mode><Days>1</Days>'))), 'MalformedXML');
    assert.equal(s3Code(() => lockConf(rule('<Days>1</Days>'))), 'MalformedXML');
    assert.equal(s3Code(() => lockConf(config('<ObjectLockEnabled>Disabled</ObjectLockEnabled>'))), 'MalformedXML');
    assert.equal(s3Code(() => lockConf(config(''))), 'MalformedXML');
    assert.equal(s3Code(() => lockConf(config('<ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule></Rule>'))), 'MalformedXML');
  });

  it('two rules are MalformedXML', () => {
    const two = config('<ObjectLockEnabled>Enabled</ObjectLockEnabled>' + '<Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>1</Days></DefaultRetention></Rule>'.repeat(2));
    assert.equal(s3Code(() => lockConf(two)), 'MalformedXML');
  });

  it('the configuration reads back as it was set', () => {
    for (const d of [{ mode: 'COMPLIANCE' as const, days: 3 }, { mode: 'GOVERNANCE' as const, years: 2 }, undefined]) {
      const xml = toXml('ObjectLockConfiguration', lockConfigurationXml(bucket({ lockDefault: d })));
      assert.deepEqual(lockConf(xml), d);
    }
    assert.match(toXml('ObjectLockConfiguration', lockConfigurationXml(bucket({ lockDefault: { mode: 'COMPLIANCE', days: 3 } }))),
      /<ObjectLockEnabled>Enabled<\/ObjectLockEnabled><Rule><DefaultRetention><Mode>COMPLIANCE<\/Mode><Days>3<\/Days><\/DefaultRetention><\/Rule>/);
  });
});

describe('object retention and legal hold documents', () => {
  const ret = (inner: string): ReturnType<typeof parseRetention> => parseRetention(parseXml(`<Retention${NS}>${inner}</Retention>`, 'Retention'));

  it('a retention is a mode and an instant', () => {
    assert.deepEqual(ret('<Mode>COMPLIANCE</Mode><RetainUntilDate>2030-02-01T00:00:00Z</RetainUntilDate>'), { mode: 'COMPLIANCE', untilMs: Date.UTC(2030, 1, 1) });
    assert.deepEqual(ret('<Mode>GOVERNANCE</Mode><RetainUntilDate>2030-02-01T01:00:00.500+01:00</RetainUntilDate>'), { mode: 'GOVERNANCE', untilMs: Date.UTC(2030, 1, 1) + 500 });
  });

  it('an empty retention asks for removal', () => {
    assert.equal(ret(''), undefined);
  });

  it('a mode without a date, a bad date or an unknown mode is MalformedXML', () => {
    assert.equal(s3Code(() => ret('<Mode>COMPLIANCE</Mode>')), 'MalformedXML');
    assert.equal(s3Code(() => ret('<RetainUntilDate>2030-02-01T00:00:00Z</RetainUntilDate>')), 'MalformedXML');
    assert.equal(s3Code(() => ret('<Mode>COMPLIANCE</Mode><RetainUntilDate>tomorrow</RetainUntilDate>')), 'MalformedXML');
    assert.equal(s3Code(() => ret('<Mode>FOREVER</Mode><RetainUntilDate>2030-02-01T00:00:00Z</RetainUntilDate>')), 'MalformedXML');
  });

  it('a retention reads back as it was set, to the millisecond', () => {
    const r = { mode: 'COMPLIANCE' as const, untilMs: Date.UTC(2031, 5, 6, 7, 8, 9, 123) };
    assert.deepEqual(parseRetention(parseXml(toXml('Retention', retentionXml(r)), 'Retention')), r);
  });

  it('a legal hold is ON or OFF, nothing else', () => {
    const hold = (s: string): boolean => parseLegalHold(parseXml(`<LegalHold${NS}>${s}</LegalHold>`, 'LegalHold'));
    assert.equal(hold('<Status>ON</Status>'), true);
    assert.equal(hold('<Status>OFF</Status>'), false);
    assert.equal(s3Code(() => hold('<Status>on</Status>')), 'MalformedXML');
    assert.equal(s3Code(() => hold('')), 'MalformedXML');
  });
});
