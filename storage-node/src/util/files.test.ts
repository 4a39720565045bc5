import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { acquireDataDirLock } from './files';

describe('util/files: the data directory lock', () => {
  let dir: string;
  const children: ReturnType<typeof spawn>[] = [];
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'archipel-lock-'));
  });
  afterEach(() => {
    for (const c of children.splice(0)) c.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const startTicks = (pid: number): string => {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  };
  const sleeper = (): number => {
    const c = spawn('sleep', ['30'], { stdio: 'ignore' });
    children.push(c);
    return c.pid!;
  };

  it('is refused while the process that holds it runs, naming it', () => {
    const pid = sleeper();
    fs.writeFileSync(path.join(dir, 'node.lock'), `${pid} ${startTicks(pid)}`);
    assert.throws(() => acquireDataDirLock(dir), new RegExp(`in use by process ${pid}`));
  });

  it('is taken over from a process that is gone, or from a pid now used by another process', () => {
    fs.writeFileSync(path.join(dir, 'node.lock'), '2147483646 1');
    acquireDataDirLock(dir)();
    const pid = sleeper();
    fs.writeFileSync(path.join(dir, 'node.lock'), `${pid} 1`); // same pid, another start time: not the holder
    const release = acquireDataDirLock(dir);
    assert.match(fs.readFileSync(path.join(dir, 'node.lock'), 'utf8'), new RegExp(`^${process.pid} \\d+$`));
    release();
    assert.equal(fs.existsSync(path.join(dir, 'node.lock')), false);
  });
});
