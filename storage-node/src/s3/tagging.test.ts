import assert from 'node:assert/strict';
import { parseTagging, taggingXml, validateObjectTags, validateBucketTags } from './tagging';
import { parseXml, toXml } from './xml';
import { S3Error } from './error';

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

const parse = (xml: string): [string, string][] => parseTagging(parseXml(xml, 'Tagging'));
const tag = (k: string, v: string): string => `<Tag><Key>${k}</Key><Value>${v}</Value></Tag>`;
const many = (n: number): [string, string][] => Array.from({ length: n }, (_, i) => [`k${i}`, `v${i}`]);

describe('tagging documents', () => {
  it('tags are read in document order, empty values included', () => {
    assert.deepEqual(parse(`<Tagging${NS}><TagSet>${tag('b', '2')}${tag('a', '')}${tag('ünï &amp; c', 'x&lt;y')}</TagSet></Tagging>`),
      [['b', '2'], ['a', ''], ['ünï & c', 'x<y']]);
  });

  it('an empty TagSet is no tags; a missing TagSet, Key or Value is MalformedXML', () => {
    assert.deepEqual(parse(`<Tagging${NS}><TagSet></TagSet></Tagging>`), []);
    assert.equal(s3Code(() => parse(`<Tagging${NS}></Tagging>`)), 'MalformedXML');
    assert.equal(s3Code(() => parse(`<Tagging><TagSet><Tag><Value>v</Value></Tag></TagSet></Tagging>`)), 'MalformedXML');
    assert.equal(s3Code(() => parse(`<Tagging><TagSet><Tag><Key>k</Key></Tag></TagSet></Tagging>`)), 'MalformedXML');
  });

  it('tags read back as they were written, one tag or many', () => {
    for (const tags of [[['only', 'one']], many(3), []] as [string, string][][]) {
      assert.deepEqual(parse(toXml('Tagging', taggingXml(tags))), tags);
    }
  });

  it('objects take at most 10 tags, buckets at most 50', () => {
    assert.equal(s3Code(() => validateObjectTags(many(10))), 'none');
    assert.equal(s3Code(() => validateObjectTags(many(11))), 'InvalidTag');
    assert.equal(s3Code(() => validateBucketTags(many(50))), 'none');
    assert.equal(s3Code(() => validateBucketTags(many(51))), 'InvalidTag');
  });

  it('duplicate keys, over-long keys or values and aws: keys are InvalidTag', () => {
    for (const check of [validateObjectTags, validateBucketTags]) {
      assert.equal(s3Code(() => check([['a', '1'], ['a', '2']])), 'InvalidTag');
      assert.equal(s3Code(() => check([['k'.repeat(129), '1']])), 'InvalidTag');
      assert.equal(s3Code(() => check([['', '1']])), 'InvalidTag');
      assert.equal(s3Code(() => check([['k', 'v'.repeat(257)]])), 'InvalidTag');
      assert.equal(s3Code(() => check([['aws:cloudformation:stack', '1']])), 'InvalidTag');
      assert.equal(s3Code(() => check([['k'.repeat(128), 'v'.repeat(256)]])), 'none');
    }
  });
});
