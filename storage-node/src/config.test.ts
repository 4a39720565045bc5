import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, parseNodeConfig } from './config';

const yaml = (id: string, host: string): string => `
node:
  id: ${id}
  site: dc1
dataDir: /var/lib/archipel/data
s3:
  host: ${host}
  port: 9000
admin:
  host: 0.0.0.0
  port: 9001
  token: 0123456789abcdef0123456789abcdef
`;

describe('node config: environment variables in values', () => {
  it('takes ${NAME} from the environment, so one file serves every pod of a pool', () => {
    const cfg = parseNodeConfig(yaml('${POD_NAME}', '${POD_IP}'), '/etc/archipel', { POD_NAME: 'dc1-pool-2', POD_IP: '10.1.2.3' });
    assert.equal(cfg.node.id, 'dc1-pool-2');
    assert.equal(cfg.node.pool, 'dc1-pool', 'the pool still comes from the id');
    assert.equal(cfg.s3.host, '10.1.2.3');
  });

  it('refuses an unset variable, naming the field and the variable', () => {
    assert.throws(() => parseNodeConfig(yaml('${POD_NAME}', '127.0.0.1'), '/etc/archipel', {}),
      (e: Error) => e instanceof ConfigError && /node\.id/.test(e.message) && /POD_NAME/.test(e.message));
  });

  it('keeps $$ as a literal dollar and cannot inject YAML through a value', () => {
    const cfg = parseNodeConfig(yaml('n-$$1', '${EVIL}'), '/etc/archipel', { EVIL: '1.2.3.4\nadmin: {}' });
    assert.equal(cfg.node.id, 'n-$1');
    assert.equal(cfg.s3.host, '1.2.3.4\nadmin: {}', 'the value stays one string');
  });
});

describe('node config: admin token from a file', () => {
  it('reads admin.tokenFile (a mounted Secret), relative to the config folder, and refuses both forms at once', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'archipel-config-'));
    fs.writeFileSync(path.join(dir, 'admin-token'), 'fedcba9876543210fedcba9876543210\n');
    const base = yaml('n-0', '127.0.0.1').replace('  token: 0123456789abcdef0123456789abcdef\n', '  tokenFile: admin-token\n');
    assert.equal(parseNodeConfig(base, dir, {}).admin.token, 'fedcba9876543210fedcba9876543210');
    assert.throws(() => parseNodeConfig(base.replace('  tokenFile:', '  token: x\n  tokenFile:'), dir, {}), /admin: give token or tokenFile, not both/);
    assert.throws(() => parseNodeConfig(base.replace('admin-token', 'missing'), dir, {}), /admin\.tokenFile: cannot read/);
  });
});
