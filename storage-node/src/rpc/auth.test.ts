import assert from 'node:assert/strict';
import { EMPTY_BODY_SHA256, GridSecrets, STREAMING_BODY, sha256Hex, signRequest, verifyRequest } from './auth';

const A = 'grid-secret-a-0123456789';
const B = 'grid-secret-b-0123456789';
const NOW = 1_800_000_000_000;

function signed(secret = A, over: Partial<{ method: string; path: string; body: string; dateMs: number }> = {}) {
  return signRequest(secret, {
    method: over.method ?? 'POST', pathAndQuery: over.path ?? '/blocks/x?offset=1', nodeId: 'dc1-0',
    bodySha256: sha256Hex(over.body ?? '{}'), dateMs: over.dateMs ?? NOW,
  });
}

describe('rpc auth', () => {
  const secrets: GridSecrets = { current: A };

  it('accepts a request signed with the grid secret and names the sender', () => {
    const r = verifyRequest(secrets, 'POST', '/blocks/x?offset=1', signed(), NOW);
    assert.deepEqual(r, { ok: true, peerId: 'dc1-0', bodySha256: sha256Hex('{}') });
  });

  it('refuses unsigned requests', () => {
    assert.deepEqual(verifyRequest(secrets, 'GET', '/', {}, NOW), { ok: false, reason: 'missing' });
  });

  it('refuses a signature made with another secret', () => {
    assert.deepEqual(verifyRequest(secrets, 'POST', '/blocks/x?offset=1', signed(B), NOW), { ok: false, reason: 'bad-signature' });
  });

  it('refuses a signature moved to another method, path, query, sender or body hash', () => {
    const h = signed();
    assert.equal(verifyRequest(secrets, 'PUT', '/blocks/x?offset=1', h, NOW).ok, false);
    assert.equal(verifyRequest(secrets, 'POST', '/blocks/y?offset=1', h, NOW).ok, false);
    assert.equal(verifyRequest(secrets, 'POST', '/blocks/x?offset=2', h, NOW).ok, false);
    assert.equal(verifyRequest(secrets, 'POST', '/blocks/x?offset=1', { ...h, 'x-archipel-node': 'dc2-0' }, NOW).ok, false);
    assert.equal(verifyRequest(secrets, 'POST', '/blocks/x?offset=1', { ...h, 'x-archipel-content-sha256': EMPTY_BODY_SHA256 }, NOW).ok, false);
    assert.equal(verifyRequest(secrets, 'POST', '/blocks/x?offset=1', { ...h, 'x-archipel-content-sha256': STREAMING_BODY }, NOW).ok, false);
  });

  it('refuses requests dated more than five minutes from the local clock, either way', () => {
    const fiveMin = 5 * 60 * 1000;
    assert.equal(verifyRequest(secrets, 'POST', '/blocks/x?offset=1', signed(A, { dateMs: NOW - fiveMin + 1000 }), NOW).ok, true);
    assert.deepEqual(verifyRequest(secrets, 'POST', '/blocks/x?offset=1', signed(A, { dateMs: NOW - fiveMin - 1 }), NOW), { ok: false, reason: 'expired' });
    assert.deepEqual(verifyRequest(secrets, 'POST', '/blocks/x?offset=1', signed(A, { dateMs: NOW + fiveMin + 1 }), NOW), { ok: false, reason: 'expired' });
  });

  it('accepts both the current and the previous secret during a rotation', () => {
    const rotating: GridSecrets = { current: B, previous: A };
    assert.equal(verifyRequest(rotating, 'POST', '/blocks/x?offset=1', signed(A), NOW).ok, true);
    assert.equal(verifyRequest(rotating, 'POST', '/blocks/x?offset=1', signed(B), NOW).ok, true);
    assert.equal(verifyRequest({ current: B }, 'POST', '/blocks/x?offset=1', signed(A), NOW).ok, false);
  });

  it('refuses malformed signature headers without throwing', () => {
    const h = signed();
    assert.deepEqual(verifyRequest(secrets, 'POST', '/blocks/x?offset=1', { ...h, 'x-archipel-signature': 'zz' }, NOW), { ok: false, reason: 'malformed' });
    assert.deepEqual(verifyRequest(secrets, 'POST', '/blocks/x?offset=1', { ...h, 'x-archipel-date': 'yesterday' }, NOW), { ok: false, reason: 'malformed' });
    assert.deepEqual(verifyRequest(secrets, 'POST', '/blocks/x?offset=1', { ...h, 'x-archipel-signature': ['a', 'b'] }, NOW), { ok: false, reason: 'missing' });
  });

  it('will not sign with a bad node id or body hash', () => {
    assert.throws(() => signRequest(A, { method: 'GET', pathAndQuery: '/', nodeId: 'a\nb', bodySha256: EMPTY_BODY_SHA256, dateMs: NOW }), RangeError);
    assert.throws(() => signRequest(A, { method: 'GET', pathAndQuery: '/', nodeId: 'a', bodySha256: 'abc', dateMs: NOW }), RangeError);
    assert.throws(() => signRequest(A, { method: 'GET', pathAndQuery: 'x', nodeId: 'a', bodySha256: EMPTY_BODY_SHA256, dateMs: NOW }), RangeError);
  });
});
