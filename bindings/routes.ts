/**
 * Services and the route cache. Incoming: (service, method) names → handler. Outgoing: the
 * encoded name block of each route we call, built once and reused for every request.
 */
import { encodeRoute } from './frame-writer.js';
import { InvalidArgumentError } from './errors.js';
import {
  INTROSPECTION_METHOD, INTROSPECTION_SERVICE, encodeMethodList, methodKind, type MethodInfo, type MethodKind,
} from './introspection.js';

/**
 * What a handler receives besides the payload. `P` is the type of `peer`: the Peer under
 * `listen`/`connect` (a PeerOptions service gets `HandlerContext<Peer>`), whatever was given
 * as SessionOptions.peer for a bare Session.
 */
export interface HandlerContext<P = unknown> {
  readonly service: string;
  readonly method: string;
  /** Metadata sent with the request (empty object when none). */
  readonly metadata: Record<string, string>;
  /** Aborts when the caller cancels, the deadline passes, or the connection drops. */
  readonly signal: AbortSignal;
  /** The peer the request came from: call it back with `ctx.peer.call(...)`. */
  readonly peer: P;
  /** The request payload carried the text flag. */
  readonly text: boolean;
  /** Absolute deadline on the session's clock (performance.now() under a Peer), when the caller set a timeout. */
  readonly deadline: number | undefined;
}

/**
 * A handler: unary handlers return a Uint8Array, a string or nothing (or a Promise of one);
 * stream handlers return or are an (async) iterable of Uint8Array | string (async generators),
 * whose steps may also be arrays of them (several messages for one step of the iterator).
 */
export type Handler<P = unknown> = (payload: Buffer, ctx: HandlerContext<P>) => unknown;
export type Service<P = unknown> = Record<string, Handler<P>>;
export type Services<P = unknown> = Record<string, Service<P>>;

export interface RouteOptions {
  /** Serve `$pipit`/`methods` (spec/PROTOCOL.md §8.11). Defaults to true. */
  introspection?: boolean;
}

export class RouteTable<P = unknown> {
  private readonly services = new Map<string, Map<string, Handler<P>>>();
  /** Kind of each method as introspection lists it, by service then method. */
  private readonly kinds = new Map<string, Map<string, MethodKind>>();
  private readonly outgoing = new Map<string, Map<string, Uint8Array>>();
  private readonly listMethods: Handler<P> | null;

  constructor(services?: Services<P>, options: RouteOptions = {}) {
    this.listMethods = options.introspection === false ? null : () => encodeMethodList(this.list());
    if (services) for (const [name, svc] of Object.entries(services)) this.add(name, svc);
  }

  /**
   * Add (or replace) a service. Methods are the object's own and inherited function properties.
   * @throws InvalidArgumentError for a name over 255 bytes or the reserved name `$pipit`.
   */
  add(name: string, service: Service<P>): void {
    if (typeof name !== 'string' || Buffer.byteLength(name) > 255) throw new InvalidArgumentError('service name must be a string of at most 255 bytes');
    if (name === INTROSPECTION_SERVICE) throw new InvalidArgumentError(`service name ${INTROSPECTION_SERVICE} is reserved for introspection`);
    if (typeof service !== 'object' || service === null) throw new InvalidArgumentError(`service ${name} must be an object of handler functions`);
    const methods = new Map<string, Handler<P>>();
    const kinds = new Map<string, MethodKind>();
    for (let o: object | null = service; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
      for (const key of Object.getOwnPropertyNames(o)) {
        if (key === 'constructor' || methods.has(key)) continue;
        const fn = (service as Record<string, unknown>)[key];
        if (typeof fn === 'function') {
          methods.set(key, (fn as Handler<P>).bind(service));
          kinds.set(key, methodKind(fn));
        }
      }
    }
    this.services.set(name, methods);
    this.kinds.set(name, kinds);
  }

  /** The handler; null when the service exists but not the method; undefined when no such service. */
  find(service: string, method: string): Handler<P> | null | undefined {
    const methods = this.services.get(service);
    if (methods === undefined) {
      if (service !== INTROSPECTION_SERVICE || this.listMethods === null) return undefined;
      return method === INTROSPECTION_METHOD ? this.listMethods : null;
    }
    return methods.get(method) ?? null;
  }

  /** Every method served, the reserved service excluded, with its kind (unsorted). */
  list(): MethodInfo[] {
    const out: MethodInfo[] = [];
    for (const [service, kinds] of this.kinds) {
      for (const [method, kind] of kinds) out.push({ service, method, kind });
    }
    return out;
  }

  outgoingRoute(service: string, method: string): Uint8Array {
    let m = this.outgoing.get(service);
    if (m === undefined) {
      if (typeof service !== 'string') throw new InvalidArgumentError('service must be a string');
      m = new Map();
      if (this.outgoing.size < 4096) this.outgoing.set(service, m);
    }
    let route = m.get(method);
    if (route === undefined) {
      if (typeof method !== 'string') throw new InvalidArgumentError('method must be a string');
      route = encodeRoute(service, method);
      if (m.size < 4096) m.set(method, route);
    }
    return route;
  }
}
