import winston from 'winston';

/** The one logger factory of a process: JSON lines by default, readable text with ARCHIPEL_LOG_FORMAT=text. */
export type Logger = winston.Logger;

export interface LoggerOptions {
  level?: string;
  format?: 'json' | 'text';
  /** Constant fields on every line, e.g. { component: 'storage-node', node: 'dc1-0' }. */
  base?: Record<string, unknown>;
}

/** Header and field names that must never reach a log line. */
const SECRET_FIELDS = new Set(['authorization', 'secretkey', 'secretaccesskey', 'secret', 'password', 'token', 'x-amz-security-token']);

const redact = winston.format((info) => {
  for (const k of Object.keys(info)) {
    if (SECRET_FIELDS.has(k.toLowerCase())) (info as Record<string, unknown>)[k] = '[redacted]';
  }
  return info;
});

export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? process.env.ARCHIPEL_LOG_LEVEL ?? 'info';
  const fmt = opts.format ?? (process.env.ARCHIPEL_LOG_FORMAT === 'text' ? 'text' : 'json');
  const format =
    fmt === 'text'
      ? winston.format.combine(redact(), winston.format.timestamp(), winston.format.printf((i) => {
          const { level: l, message, timestamp, ...rest } = i;
          const extra = Object.keys(rest).length ? ' ' + JSON.stringify(rest) : '';
          return `${timestamp} ${l} ${message}${extra}`;
        }))
      : winston.format.combine(redact(), winston.format.timestamp(), winston.format.json());
  return winston.createLogger({
    level,
    format,
    defaultMeta: opts.base,
    // Logs go to stderr so that stdout stays free for command output (endpoints, credentials, tables).
    transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'] })],
  });
}

/** A logger that writes nothing, for unit tests. */
export function silentLogger(): Logger {
  return winston.createLogger({ silent: true, transports: [new winston.transports.Console()] });
}
