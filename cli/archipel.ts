#!/usr/bin/env node
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { loadNodeConfig, ConfigError } from '../storage-node/src/config';
import { runNode } from '../storage-node/src/main';
import { createLogger } from '../storage-node/src/util/logger';
import { runAuditVerify } from '../storage-node/src/audit/verify';
import { registerLocalCommands } from './local/commands';
import { runOperator } from '../operator/src/main';
import { OptionsError, operatorOptions, type OperatorFlags } from '../operator/src/runtime/options';

// A node keeps many blocking file system calls in flight (per PUT: the blob's fsync, its folder's
// fsync, the WAL's fsync; unlinks of freed blobs). libuv's default pool of 4 threads would queue them
// behind each other. Read by libuv when the pool starts (first use), so set before any I/O.
if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = '16';

const program = new Command();
program.name('archipel').description('Archipel: a multi-site S3-compatible object store for sensitive data').version('0.1.0');

program
  .command('node')
  .description('run one storage node')
  .requiredOption('-c, --config <file>', 'node configuration (YAML)')
  .action(async (opts: { config: string }) => {
    let cfg;
    try {
      cfg = loadNodeConfig(opts.config);
    } catch (e) {
      if (e instanceof ConfigError) {
        process.stderr.write(`archipel: invalid configuration ${opts.config}: ${e.message}\n`);
        process.exit(2);
      }
      throw e;
    }
    const log = createLogger({ level: cfg.log.level, format: cfg.log.format, base: { component: 'storage-node', node: cfg.node.id } });
    process.on('uncaughtException', (e) => {
      log.error('uncaught exception', { error: e.stack });
      process.exit(70);
    });
    // Handlers before the start: a pod stopped while its node starts (PID 1 in a container ignores an
    // unhandled SIGTERM) stops as soon as the start is over instead of waiting for SIGKILL.
    let node: Awaited<ReturnType<typeof runNode>> | undefined;
    let pending: string | undefined;
    let signals = 0;
    const stop = (sig: string): void => {
      node!.stop(sig).then(() => process.exit(0), (e: Error) => {
        log.error('stop failed', { error: e.message });
        process.exit(1);
      });
    };
    const onSignal = (sig: string): void => {
      if (++signals > 1) process.exit(1);
      if (node) stop(sig);
      else pending = sig;
    };
    process.on('SIGTERM', () => onSignal('SIGTERM'));
    process.on('SIGINT', () => onSignal('SIGINT'));
    node = await runNode(cfg, log).catch((e: Error) => {
      log.error('node failed to start', { error: e.message });
      process.exit(1);
    });
    if (pending !== undefined) stop(pending);
  });

const audit = program.command('audit').description('audit log tools');
audit
  .command('verify')
  .description('check the hash chain of a node\'s audit log; says which record was altered, removed or inserted')
  .argument('<dir>', 'the audit folder (<dataDir>/audit) or a node data directory')
  .action(async (dir: string) => {
    const nested = path.join(dir, 'audit');
    const target = fs.existsSync(nested) && fs.statSync(nested).isDirectory() ? nested : dir;
    process.exitCode = await runAuditVerify(target, process.stdout);
  });

program
  .command('operator')
  .description('run the Kubernetes operator: in a pod with its service account, or anywhere with a kubeconfig')
  .option('--kubeconfig <file>', 'kubeconfig file (default: the service account in a pod, else KUBECONFIG or ~/.kube/config)')
  .option('-n, --namespace <ns>', 'a namespace to watch; repeat or separate with commas (default: all namespaces)', (v: string, acc: string[]) => [...acc, v], [] as string[])
  .option('--metrics-port <n>', 'port of /healthz, /readyz and /metrics (0: any free port, logged)', '8080')
  .option('--metrics-address <host>', 'address that port listens on', '0.0.0.0')
  .option('--leader-election', 'reconcile only while holding the Lease, so that several replicas can run (default)')
  .option('--no-leader-election', 'reconcile without a Lease: one replica only')
  .option('--lease-name <name>', 'name of the Lease', 'archipel-operator')
  .option('--lease-namespace <ns>', 'namespace of the Lease (default: POD_NAMESPACE, the service account\'s, the first --namespace, else default)')
  .option('--lease-duration <s>', 'seconds a standby waits after the last renewal it saw before taking the Lease', '15')
  .option('--renew-deadline <s>', 'seconds the leader keeps leading without renewing (less than the lease duration)', '10')
  .option('--retry-period <s>', 'seconds between two attempts to acquire or renew', '2')
  .option('--workers <n>', 'reconciles at once per kind', '2')
  .option('--log-level <level>', 'error, warn, info or debug', process.env.ARCHIPEL_LOG_LEVEL ?? 'info')
  .option('--log-format <format>', 'json or text', process.env.ARCHIPEL_LOG_FORMAT === 'text' ? 'text' : 'json')
  .action(async (flags: OperatorFlags & { logLevel: string; logFormat: string }) => {
    let options;
    try {
      options = operatorOptions(flags);
      if (flags.logFormat !== 'json' && flags.logFormat !== 'text') throw new OptionsError(`--log-format must be json or text, not ${JSON.stringify(flags.logFormat)}`);
    } catch (e) {
      if (e instanceof OptionsError) {
        process.stderr.write(`archipel operator: ${e.message}\n`);
        process.exit(2);
      }
      throw e;
    }
    const log = createLogger({ level: flags.logLevel, format: flags.logFormat as 'json' | 'text', base: { component: 'operator' } });
    process.on('uncaughtException', (e) => {
      log.error('uncaught exception', { error: e.stack });
      process.exit(70);
    });
    const operator = await runOperator(options, log).catch((e: Error) => {
      log.error('operator failed to start', { error: e.message });
      process.exit(1);
    });
    let signals = 0;
    const onSignal = (sig: string): void => {
      if (++signals > 1) process.exit(1);
      // Bounded: reconciles get 30 s to finish, the Lease release and the rest a few more.
      setTimeout(() => {
        log.error('stop took too long; exiting', { signal: sig });
        process.exit(1);
      }, 45_000).unref();
      operator.stop(sig).then(() => process.exit(0), (e: Error) => {
        log.error('stop failed', { error: e.message });
        process.exit(1);
      });
    };
    process.on('SIGTERM', () => onSignal('SIGTERM'));
    process.on('SIGINT', () => onSignal('SIGINT'));
  });

registerLocalCommands(program);

program.parseAsync(process.argv).catch((e: Error) => {
  process.stderr.write(`archipel: ${e.message}\n`);
  process.exit(1);
});
