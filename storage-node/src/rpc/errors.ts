/**
 * Errors of the peer RPC layer. Callers decide what to do from the class alone:
 * - PeerUnavailableError: the peer could not be reached (or is marked down); try another copy.
 * - PeerTimeoutError: the peer was reached but did not answer in time; the outcome is unknown.
 * - PeerBusyError: our own per-peer queue is full (or the wait in it expired); nothing was sent.
 * - RpcError: the peer answered with an error status; `code` comes from its JSON body.
 * Handlers on the server side throw RpcError too; the server renders it as `{ error: { code, message } }`.
 */
export class RpcError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly peerId?: string,
  ) {
    super(message);
    this.name = 'RpcError';
  }
}

export class PeerUnavailableError extends Error {
  readonly code = 'PeerUnavailable';
  constructor(readonly peerId: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PeerUnavailableError';
  }
}

export class PeerTimeoutError extends Error {
  readonly code = 'PeerTimeout';
  constructor(readonly peerId: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PeerTimeoutError';
  }
}

export class PeerBusyError extends Error {
  readonly code = 'PeerBusy';
  constructor(readonly peerId: string, message: string) {
    super(message);
    this.name = 'PeerBusyError';
  }
}

/** The JSON error body every RPC error response carries. */
export interface RpcErrorBody {
  error: { code: string; message: string };
}

export function isRpcErrorBody(v: unknown): v is RpcErrorBody {
  if (typeof v !== 'object' || v === null) return false;
  const e = (v as { error?: unknown }).error;
  return typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'string';
}
