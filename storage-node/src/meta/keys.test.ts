import assert from 'node:assert/strict';
import { assertKey, commonPrefixOf, compareUtf8, isWellFormed, prefixSuccessor } from './keys';

/** Deterministic PRNG so that a failure replays. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const bytes = (s: string): Buffer => Buffer.from(s, 'utf8');
const byteCompare = (a: string, b: string): number => Buffer.compare(bytes(a), bytes(b));

/** Characters around the boundaries where UTF-16 and UTF-8 orders disagree. */
const ALPHABET = ['a', 'z', '/', '!', '~', '\u007f', 'é', '\u07ff', '\u0800', '中', '\ud7ff', '\ue000', '\uffff', '😀', '\u{10000}', '\u{10ffff}'];

function randomString(r: () => number, maxLen: number): string {
  const n = Math.floor(r() * (maxLen + 1));
  let s = '';
  for (let i = 0; i < n; i++) s += ALPHABET[Math.floor(r() * ALPHABET.length)];
  return s;
}

describe('meta/keys', () => {
  it('orders keys as S3 does (UTF-8 bytes), not as JavaScript compares UTF-16', () => {
    assert.ok('\ue000' > '😀', 'JS order differs for these two');
    assert.ok(compareUtf8('\ue000', '😀') < 0);
    assert.ok(compareUtf8('a', 'a/') < 0);
    assert.ok(compareUtf8('é', '中') < 0);
    assert.equal(compareUtf8('中😀', '中😀'), 0);
    const r = rng(1);
    for (let i = 0; i < 20_000; i++) {
      const a = randomString(r, 5);
      const b = randomString(r, 5);
      assert.equal(Math.sign(compareUtf8(a, b)), Math.sign(byteCompare(a, b)), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
    }
  });

  it('computes the successor of a prefix: every key with the prefix sorts below it, nothing else between', () => {
    assert.equal(prefixSuccessor('a/'), 'a0');
    assert.equal(prefixSuccessor('\ud7ff'), '\ue000', 'skips the surrogate range');
    assert.equal(prefixSuccessor('a\u{10ffff}'), 'b', 'drops a trailing U+10FFFF');
    assert.equal(prefixSuccessor('😀'), '😁');
    assert.equal(prefixSuccessor('\uffff'), '\u{10000}');
    assert.equal(prefixSuccessor(''), undefined);
    assert.equal(prefixSuccessor('\u{10ffff}\u{10ffff}'), undefined);
    const r = rng(2);
    for (let i = 0; i < 20_000; i++) {
      const p = randomString(r, 3);
      const s = randomString(r, 5);
      const succ = prefixSuccessor(p);
      if (succ === undefined) {
        assert.ok(byteCompare(s, p) < 0 || s.startsWith(p), 'no successor: nothing sorts after the prefix range');
        continue;
      }
      assert.ok(isWellFormed(succ));
      const inRange = byteCompare(s, p) >= 0 && byteCompare(s, succ) < 0;
      assert.equal(inRange, s.startsWith(p), `p=${JSON.stringify(p)} s=${JSON.stringify(s)} succ=${JSON.stringify(succ)}`);
    }
  });

  it('rolls a key up to the prefix plus everything through the first delimiter after it', () => {
    assert.equal(commonPrefixOf('a/b/c', '', '/'), 'a/');
    assert.equal(commonPrefixOf('a/b/c', 'a/', '/'), 'a/b/');
    assert.equal(commonPrefixOf('a/b', 'a/', '/'), undefined);
    assert.equal(commonPrefixOf('a/b', 'a', undefined), undefined);
    assert.equal(commonPrefixOf('x--y--z', 'x', '--'), 'x--');
    assert.equal(commonPrefixOf('中😀中', '', '😀'), '中😀');
  });

  it('refuses keys S3 cannot store: empty, over 1024 UTF-8 bytes, lone surrogates', () => {
    assertKey('a'.repeat(1024));
    assertKey('中'.repeat(341));
    assert.throws(() => assertKey(''), /non-empty/);
    assert.throws(() => assertKey('a'.repeat(1025)), /1024/);
    assert.throws(() => assertKey('中'.repeat(342)), /1024/);
    assert.throws(() => assertKey('a\ud800'), /well-formed/);
    assert.throws(() => assertKey('\udc00a'), /well-formed/);
  });
});
