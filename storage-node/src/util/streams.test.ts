import assert from 'node:assert/strict';
import { PassThrough, Readable, Writable } from 'node:stream';
import { chain, pump } from './streams';

function sink(): Writable & { got: Buffer[] } {
  const got: Buffer[] = [];
  const w = new Writable({
    write(c: Buffer, _e, cb) {
      got.push(c);
      cb();
    },
  });
  return Object.assign(w, { got });
}

describe('stream plumbing', () => {
  it('chain passes every byte through the stages and reports the end once', async () => {
    let ends = 0;
    const out = chain(Readable.from([Buffer.from('ab'), Buffer.from('cd')]), [new PassThrough(), new PassThrough()], (err) => {
      assert.equal(err, null);
      ends++;
    });
    const parts: Buffer[] = [];
    for await (const c of out) parts.push(c as Buffer);
    assert.equal(Buffer.concat(parts).toString(), 'abcd');
    await new Promise((r) => setImmediate(r));
    assert.equal(ends, 1);
  });

  it('chain hands a source failure (a client gone mid-body) to whoever reads the last stage', async () => {
    const src = new PassThrough();
    const stage = new PassThrough();
    const out = chain(src, [stage]);
    src.write('partial');
    src.destroy(new Error('client went away'));
    await assert.rejects((async () => {
      for await (const _ of out) void _;
    })(), /client went away/);
    assert.ok(stage.destroyed);
  });

  it('pump resolves once the destination finished, and a failing source destroys the destination', async () => {
    const ok = sink();
    await pump(Readable.from([Buffer.from('x'), Buffer.from('y')]), ok);
    assert.equal(Buffer.concat(ok.got).toString(), 'xy');
    const dst = sink();
    async function* failing(): AsyncGenerator<Buffer> {
      yield Buffer.from('x');
      throw new Error('boom');
    }
    await assert.rejects(pump(Readable.from(failing()), dst), /boom/);
    assert.ok(dst.destroyed);
  });
});
