/** The peer RPC layer: signed HTTP between the nodes of a grid (docs/decisions/0010-peer-rpc.md). */
export { GridSecrets, HEADER_LAYOUT_VERSION, signRequest, verifyRequest } from './auth';
export { RpcClient, RpcClientOptions, RpcPeer, StreamResponse } from './client';
export { PeerBusyError, PeerTimeoutError, PeerUnavailableError, RpcError, RpcErrorBody } from './errors';
export { FailureKind, PeerHealth, PeerHealthEntry, PeerHealthOptions } from './health';
export { PING_PATH, RpcReply, RpcRequest, RpcRoute, RpcServer, RpcServerOptions, startRpcServer } from './server';
