/**
 * listen / connect over Unix sockets.
 *
 * Socket file rules: the socket is created owner-only (umask 077 around bind) under a
 * temporary name in the target directory, given `mode` (default 0o600) and then renamed onto
 * the path, so no one can connect during a window with looser permissions. A stale socket left by a dead process is replaced; a
 * live one (something answers a connect) makes `listen` fail; a path holding anything that
 * is not a socket is never touched. `server.close()` removes the socket file, if it is still
 * ours.
 */
import { EventEmitter } from 'node:events';
import { lstatSync, unlinkSync, renameSync, chmodSync, statSync, type Stats } from 'node:fs';
import { dirname, join } from 'node:path';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { PipitError, InvalidArgumentError } from './errors.js';
import { Peer, type InPlaceReader, type PeerOptions } from './peer.js';

/** Longest Unix socket path on Linux (sun_path is 108 bytes with the terminating NUL). */
const MAX_SOCKET_PATH_BYTES = 107;

export interface ListenOptions extends PeerOptions {
  /** Permissions of the socket file. Defaults to 0o600 (only the owner can connect). */
  mode?: number;
}

export interface ServerEvents {
  connection: [peer: Peer];
  /** A connection ended, with its error (or null when it closed gracefully). */
  disconnect: [peer: Peer, error: PipitError | null];
}

export class Server extends EventEmitter<ServerEvents> {
  /** Connections currently open. */
  readonly peers = new Set<Peer>();
  private inode = -1;
  private closing: Promise<void> | null = null;

  constructor(
    readonly path: string,
    private readonly server: net.Server,
    private readonly options: ListenOptions,
  ) {
    super();
    server.on('connection', (socket) => this.onSocket(socket));
    // Errors after listening (EMFILE on accept...) must not crash the process.
    server.on('error', () => {});
  }

  private onSocket(socket: net.Socket): void {
    if (this.closing !== null) {
      socket.destroy();
      return;
    }
    const peer = new Peer(socket, this.options);
    this.peers.add(peer);
    peer.once('close', (error) => {
      this.peers.delete(peer);
      this.emit('disconnect', peer, error);
    });
    this.emit('connection', peer);
  }

  /** @internal */
  rememberInode(ino: number): void {
    this.inode = ino;
  }

  /**
   * Stop accepting, close every connection gracefully (GOAWAY; calls in flight finish), and
   * remove the socket file. With `timeout`, connections still open then are cut off.
   */
  close(options: { timeout?: number } = {}): Promise<void> {
    this.closing ??= (async () => {
      const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
      this.removeSocketFile();
      await Promise.all([...this.peers].map((p) => p.close(options)));
      await stopped;
    })();
    return this.closing;
  }

  private removeSocketFile(): void {
    let st: Stats;
    try {
      st = lstatSync(this.path);
    } catch {
      return;
    }
    // Only our own socket: someone may have replaced it since.
    if (st.isSocket() && st.ino === this.inode) unlinkSync(this.path);
  }
}

/** Serve on a Unix socket. Resolves once the socket file is in place and accepting. */
export async function listen(path: string, options: ListenOptions = {}): Promise<Server> {
  checkPath(path);
  const mode = options.mode ?? 0o600;
  // The temporary name must fit the same limit as the path: a short random name (8 to 16 hex
  // digits, as many as fit), so every path within the limit works unless its directory alone
  // nearly fills it.
  const dir = dirname(path);
  const room = MAX_SOCKET_PATH_BYTES - Buffer.byteLength(dir) - 2;
  const tmp = join(dir, `.${randomBytes(8).toString('hex').slice(0, Math.min(16, Math.max(8, room)))}`);
  if (Buffer.byteLength(tmp) > MAX_SOCKET_PATH_BYTES) {
    throw new InvalidArgumentError(
      `socket path ${path}: its directory leaves no room for the temporary socket name (paths are limited to ${MAX_SOCKET_PATH_BYTES} bytes); use a shorter directory`,
    );
  }
  checkDirectory(path, dir);
  await clearStale(path);
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', (err: NodeJS.ErrnoException) => reject(listenError(path, err)));
    // bind(2) runs synchronously inside listen(): an owner-only umask around that call makes
    // the socket 0600 from birth, whatever the process umask is (0 or 002 would otherwise
    // leave it connectable by others until the chmod). Workers cannot set the umask; there
    // the process umask applies until the chmod below.
    let saved: number | null = null;
    try {
      saved = process.umask(0o077);
    } catch {
      saved = null;
    }
    try {
      srv.listen(tmp, () => resolve());
    } finally {
      if (saved !== null) process.umask(saved);
    }
  });
  try {
    chmodSync(tmp, mode);
    renameSync(tmp, path);
  } catch (err) {
    srv.close();
    throw listenError(path, err as NodeJS.ErrnoException);
  }
  const server = new Server(path, srv, options);
  server.rememberInode(statSync(path).ino);
  return server;
}

export interface ConnectOptions extends PeerOptions {
  /** Milliseconds to wait for the connection. Defaults to no limit. */
  timeout?: number;
}

/** Connect to a Unix socket. Resolves with the Peer once connected. */
export async function connect(path: string, options: ConnectOptions = {}): Promise<Peer> {
  checkPath(path);
  // Client sockets read straight into the decoder's memory (net.Socket onread): no Buffer per
  // read, and with the Wasm codec no copy into linear memory either. Every codec selectCodec
  // returns for inPlace supports readBuffer()/commit(). PIPIT_INPLACE=0 turns it off.
  const inPlace = process.env.PIPIT_INPLACE !== '0';
  let reader: InPlaceReader | null = null;
  const socket = inPlace
    ? new net.Socket({
        onread: {
          buffer: () => reader!.buffer(),
          callback: (n: number) => reader!.read(n),
        },
      } as net.SocketConstructorOpts)
    : new net.Socket();
  const peer = new Peer(socket, { ...options, inPlace });
  if (inPlace) reader = peer.inPlaceReader();
  await waitConnected(socket, path, options.timeout);
  return peer;
}

function waitConnected(socket: net.Socket, path: string, timeout?: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let timer: NodeJS.Timeout | null = null;
    const fail = (err: NodeJS.ErrnoException): void => {
      if (timer) clearTimeout(timer);
      socket.destroy();
      reject(new PipitError('UNAVAILABLE', `cannot connect to ${path}: ${err.code ?? err.message}`, { cause: err }));
    };
    socket.once('error', fail);
    if (timeout !== undefined) {
      timer = setTimeout(() => fail(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })), timeout);
    }
    socket.connect(path, () => {
      if (timer) clearTimeout(timer);
      socket.off('error', fail);
      resolve();
    });
  });
}

function checkPath(path: string): void {
  if (typeof path !== 'string' || path.length === 0) throw new InvalidArgumentError('socket path must be a non-empty string');
  const n = Buffer.byteLength(path);
  if (n > MAX_SOCKET_PATH_BYTES) {
    throw new InvalidArgumentError(`socket path is ${n} bytes; Unix sockets allow at most ${MAX_SOCKET_PATH_BYTES}: ${path}`);
  }
}

/** Remove a stale socket at `path`; refuse when it is live or not a socket. */
async function clearStale(path: string): Promise<void> {
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch {
    return; // nothing there
  }
  if (!st.isSocket()) {
    throw new PipitError('UNAVAILABLE', `${path} exists and is not a socket; refusing to replace it`);
  }
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new PipitError('UNAVAILABLE', `${path} is in use by a running server`);
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** bind(2) reports a missing directory as EACCES through libuv: say what is really wrong. */
function checkDirectory(path: string, dir: string): void {
  let st: Stats;
  try {
    st = statSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'ENOTDIR' ? 'is not a directory' : `cannot be read (${code})`;
    throw new PipitError('UNAVAILABLE', `cannot listen on ${path}: directory ${dir} ${why}`, { cause: err });
  }
  if (!st.isDirectory()) throw new PipitError('UNAVAILABLE', `cannot listen on ${path}: ${dir} is not a directory`);
}

function listenError(path: string, err: NodeJS.ErrnoException): PipitError {
  return new PipitError('UNAVAILABLE', `cannot listen on ${path}: ${err.code ?? err.message}`, { cause: err });
}
