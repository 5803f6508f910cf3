/**
 * The socket file: permissions, stale and live sockets, things that are not sockets, path
 * length, removal on close, connecting to nothing.
 */
import { describe, expect, it } from 'vitest';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, listen, InvalidArgumentError, PipitError } from '../../bindings/index.js';
import { serverProcess, socketPath, tempDir } from '../helpers/harness.js';

const modeOf = (path: string): number => lstatSync(path).mode & 0o777;
const services = { db: { query: (p: Buffer) => `q:${p}` } };

/** A path of exactly `bytes` bytes in a fresh temp directory. */
function pathOfLength(bytes: number): string {
  const dir = tempDir();
  return join(dir, 'x'.repeat(bytes - Buffer.byteLength(dir) - 1));
}

async function works(path: string): Promise<void> {
  const peer = await connect(path);
  expect((await peer.call('db', 'query', 'ping')).toString()).toBe('q:ping');
  await peer.close();
}

describe('socket file', () => {
  it('is created with mode 0600 by default, and removed by server.close()', async () => {
    const path = socketPath();
    const server = await listen(path, { services });
    expect(lstatSync(path).isSocket()).toBe(true);
    expect(modeOf(path)).toBe(0o600);
    await works(path);
    await server.close();
    expect(existsSync(path)).toBe(false);
    // Nothing else was left in the directory (no temporary socket).
    expect(readdirSync(join(path, '..'))).toEqual([]);
  });

  it('honours a custom mode, also in another process', async () => {
    const path = socketPath();
    const server = await listen(path, { services, mode: 0o660 });
    expect(modeOf(path)).toBe(0o660);
    await server.close();

    const other = socketPath();
    const child = await serverProcess(other, { mode: 0o666 });
    expect(modeOf(other)).toBe(0o666);
    await works(other);
    await child.ask({ cmd: 'close' }, 'closed');
    expect(existsSync(other)).toBe(false);
  });

  it('replaces a stale socket left by a killed server process', async () => {
    const path = socketPath();
    const child = await serverProcess(path);
    child.kill('SIGKILL');
    await child.exited;
    expect(lstatSync(path).isSocket()).toBe(true); // left behind
    await expect(connect(path)).rejects.toMatchObject({ code: 'UNAVAILABLE' });

    const server = await listen(path, { services });
    expect(modeOf(path)).toBe(0o600);
    let accepted = 0;
    server.on('connection', () => accepted++);
    await works(path);
    expect(accepted).toBe(1); // the new server is the one answering there
    await server.close();
  });

  it('refuses to listen where a live server is, and leaves it serving', async () => {
    const path = socketPath();
    const child = await serverProcess(path);
    const ino = lstatSync(path).ino;
    const err = await listen(path, { services }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PipitError);
    expect(err).toMatchObject({ code: 'UNAVAILABLE' });
    expect((err as Error).message).toBe(`${path} is in use by a running server`);
    expect(lstatSync(path).ino).toBe(ino);
    await works(path);
    // Also when the live server is in this process.
    const server = await listen(socketPath(), { services });
    await expect(listen(server.path)).rejects.toThrow(/in use by a running server/);
    await server.close();
    await child.ask({ cmd: 'close' }, 'closed');
  });

  it('never deletes what is not a socket (regular file, directory, symlink) and fails clearly', async () => {
    const dir = tempDir();
    const file = join(dir, 'data.txt');
    writeFileSync(file, 'precious');
    await expect(listen(file, { services })).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      message: `${file} exists and is not a socket; refusing to replace it`,
    });
    expect(readFileSync(file, 'utf8')).toBe('precious');

    const sub = join(dir, 'sub');
    mkdirSync(sub);
    await expect(listen(sub, { services })).rejects.toThrow(/is not a socket/);
    expect(lstatSync(sub).isDirectory()).toBe(true);

    // A symlink, even to a stale socket, is not replaced either.
    const link = join(dir, 'link');
    symlinkSync(file, link);
    await expect(listen(link, { services })).rejects.toThrow(/is not a socket/);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readFileSync(file, 'utf8')).toBe('precious');
    expect(readdirSync(dir).sort()).toEqual(['data.txt', 'link', 'sub']);
  });

  it('rejects a path that is too long with a clear InvalidArgumentError', async () => {
    const long = pathOfLength(108);
    const err = await listen(long, { services }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect((err as Error).message).toBe(`socket path is 108 bytes; Unix sockets allow at most 107: ${long}`);
    await expect(connect(long)).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(existsSync(long)).toBe(false);
    await expect(listen('')).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('names a missing directory (bind(2) alone would say EACCES)', async () => {
    const dir = join(tempDir(), 'no-such-dir');
    const path = join(dir, 'app.sock');
    await expect(listen(path, { services })).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      message: `cannot listen on ${path}: directory ${dir} does not exist`,
    });
    const file = join(tempDir(), 'plain-file');
    writeFileSync(file, '');
    await expect(listen(join(file, 'app.sock'), { services })).rejects.toMatchObject({
      message: `cannot listen on ${join(file, 'app.sock')}: ${file} is not a directory`,
    });
  });

  it('accepts the longest allowed path (107 bytes)', async () => {
    for (const n of [100, 107]) {
      const path = pathOfLength(n);
      const server = await listen(path, { services });
      expect(modeOf(path)).toBe(0o600);
      await works(path);
      await server.close();
      expect(existsSync(path)).toBe(false);
    }
    // Unless the directory alone nearly fills the limit: then a clear error, and nothing touched.
    const dir = join(tempDir(), 'd');
    const deep = join(dir, 'd'.repeat(100 - Buffer.byteLength(dir) - 1));
    mkdirSync(deep, { recursive: true });
    const tight = join(deep, 'a.sock');
    expect(Buffer.byteLength(tight)).toBe(107);
    await expect(listen(tight, { services })).rejects.toThrow(
      new InvalidArgumentError(
        `socket path ${tight}: its directory leaves no room for the temporary socket name (paths are limited to 107 bytes); use a shorter directory`,
      ),
    );
    expect(readdirSync(deep)).toEqual([]);
  });

  it('does not remove a socket that replaced ours on close', async () => {
    const path = socketPath();
    const first = await listen(path, { services });
    // Someone moves ours away and serves at the same path.
    const moved = join(path, '..', 'moved.sock');
    renameSync(path, moved);
    const second = await listen(path, { services });
    await first.close();
    expect(lstatSync(path).isSocket()).toBe(true);
    await works(path);
    await second.close();
    expect(existsSync(path)).toBe(false);
  });

  it('makes connect to a missing path reject with UNAVAILABLE', async () => {
    const path = socketPath('none.sock');
    const err = await connect(path).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PipitError);
    expect(err).toMatchObject({ code: 'UNAVAILABLE', message: `cannot connect to ${path}: ENOENT` });
    // And to a path that is not a socket.
    const file = join(tempDir(), 'plain');
    writeFileSync(file, '');
    await expect(connect(file)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});
