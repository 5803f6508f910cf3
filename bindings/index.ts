/**
 * pipit: framed calls and streams between two processes over a Unix socket or any byte
 * stream. Public API re-exports only.
 */
export { listen, connect, Server, type ListenOptions, type ConnectOptions } from './transport.js';
export { Peer, type PeerOptions } from './peer.js';
export { Session, type SessionOptions } from './session.js';
export type { CallOptions, StreamOptions } from './caller.js';
export type { SessionHost } from './link.js';
export { MessageStream, type Message } from './message-stream.js';
export { PipitError, ProtocolError, InvalidArgumentError, statusName, type ErrorCode } from './errors.js';
export type { HandlerContext, Handler, Service, Services } from './routes.js';
export {
  unary, streaming, methodKind, MethodKind, type MethodInfo, encodeMethodList, decodeMethodList,
  INTROSPECTION_SERVICE, INTROSPECTION_METHOD,
} from './introspection.js';
export type { Payload, Sendable } from './frame-writer.js';
export type { Codec, Decoder } from './codec.js';
export { selectCodec, type CodecChoice } from './codec-select.js';
export { Status, type StatusName, APP_STATUS_MIN, PROTOCOL_VERSION } from './constants.js';
