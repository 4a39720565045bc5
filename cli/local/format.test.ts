import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { exportLines, formatBytes, formatDuration, progressBar, shellQuote, table } from './format';

describe('local runtime: text output', () => {
  it('quotes values so that a shell gives back exactly the same bytes', () => {
    const nasty = `it's "a" $HOME \`x\` \\ ; & | * \n end`;
    const out = execFileSync('sh', ['-c', `${exportLines([['V', nasty]])} printf %s "$V"`], { encoding: 'utf8' });
    assert.equal(out, nasty);
    assert.equal(shellQuote('http://127.0.0.11:9000'), 'http://127.0.0.11:9000', 'plain values stay readable');
  });

  it('refuses a variable name a shell would not take', () => {
    assert.throws(() => exportLines([['A B', 'x']]), /not a shell variable name/);
  });

  it('formats sizes with binary units, and "-" for unknown', () => {
    assert.equal(formatBytes(undefined), '-');
    assert.equal(formatBytes(512), '512 B');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(formatBytes(300 * 1024 ** 3), '300 GiB');
  });

  it('aligns table columns', () => {
    assert.equal(table([['A', 'BB'], ['ccc', 'd']]), 'A    BB\nccc  d');
  });

  it('draws a progress bar that is full only when done', () => {
    assert.equal(progressBar(0.45), '[#########-----------]');
    assert.equal(progressBar(0), '[--------------------]');
    assert.equal(progressBar(0.999), '[###################-]', 'rounded down');
    assert.equal(progressBar(1), '[####################]');
    assert.equal(progressBar(1.7, 4), '[####]', 'clamped');
    assert.equal(progressBar(Number.NaN, 4), '[----]');
  });

  it('formats durations in seconds, minutes and hours, and "unknown" when there is none', () => {
    assert.equal(formatDuration(4.2), '5 s');
    assert.equal(formatDuration(0), '0 s');
    assert.equal(formatDuration(200), '3 min 20 s');
    assert.equal(formatDuration(7500), '2 h 5 min');
    assert.equal(formatDuration(null), 'unknown');
  });
});
