/**
 * The `testee` service of spec/TESTEE.md, which every pipit implementation serves for
 * cross-implementation tests (`pipit serve SOCKET --testee`). `echo` and `callback` pass
 * messages on as `{ payload, text }`, so the TEXT flag travels exactly as it came, even on
 * bytes that are not valid UTF-8.
 */
import { createHash } from 'node:crypto';
import { PipitError, unary, type HandlerContext, type Peer, type Service } from '../bindings/index.js';

/** Counters that live as long as the server process, across connections. */
export interface TesteeState {
  /** `sleep` handlers that stopped early (cancel, deadline, lost connection). */
  cancellations: number;
}

const U32_MAX = 4294967295;
const ROWS_SIZE_MAX = 16777216;
/** Longest single wait of a timer (Node warns and fires at once beyond it). */
const TIMER_MAX_MS = 2 ** 31 - 1;

/** A decimal number without sign, `+` or spaces, at most `max`; else null. */
function decimal(s: string, max: number): number | null {
  if (!/^[0-9]{1,20}$/.test(s)) return null;
  const n = Number(s);
  return n <= max ? n : null;
}

function malformed(message: string): PipitError {
  return new PipitError('INVALID_ARGUMENT', message);
}

/** The payload back with the TEXT it came with (see the file comment for invalid UTF-8). */
/** A fresh testee service sharing `state` (one per server process). */
export function testeeService(state: TesteeState = { cancellations: 0 }): Service {
  return {
    echo: unary((payload: Buffer, ctx: HandlerContext) => ({ payload, text: ctx.text })),

    sha256: unary((payload: Buffer) => createHash('sha256').update(payload).digest()),

    *rows(payload: Buffer) {
      const parts = payload.toString('latin1').split(' ');
      const count = parts.length <= 2 ? decimal(parts[0]!, U32_MAX) : null;
      const size = parts.length === 2 ? decimal(parts[1]!, ROWS_SIZE_MAX) : parts.length === 1 ? 0 : null;
      if (count === null || size === null) {
        throw malformed(`rows expects "<count>" or "<count> <size>" (count 0 to ${U32_MAX}, size 0 to ${ROWS_SIZE_MAX})`);
      }
      for (let i = 0; i < count; i++) yield String(i).padEnd(size, ' ');
    },

    fail: unary((payload: Buffer) => {
      const s = payload.toString('utf8');
      const space = s.indexOf(' ');
      const code = decimal(space < 0 ? s : s.slice(0, space), U32_MAX);
      if (code === null || code === 0) throw malformed(`fail expects "<code>" or "<code> <message>" (code 1 to ${U32_MAX})`);
      // Exactly that code: the session turns a code a handler may not send into
      // APPLICATION_ERROR (spec/PROTOCOL.md §13.2).
      throw new PipitError(code, space < 0 ? '' : s.slice(space + 1));
    }),

    sleep: unary(async (payload: Buffer, ctx: HandlerContext) => {
      const ms = decimal(payload.toString('latin1'), U32_MAX);
      if (ms === null) throw malformed(`sleep expects "<ms>" (0 to ${U32_MAX})`);
      const signal = ctx.signal;
      await new Promise<void>((resolve, reject) => {
        let timer: NodeJS.Timeout | null = null;
        const stop = (): void => {
          if (timer !== null) clearTimeout(timer);
          state.cancellations++;
          reject(signal.reason instanceof Error ? signal.reason : new PipitError('CANCELLED', 'sleep stopped'));
        };
        if (signal.aborted) return stop();
        // Long waits in steps: a timer cannot wait more than 2^31-1 ms at once.
        const wait = (left: number): void => {
          timer = setTimeout(() => {
            if (left > TIMER_MAX_MS) return wait(left - TIMER_MAX_MS);
            signal.removeEventListener('abort', stop);
            resolve();
          }, Math.min(left, TIMER_MAX_MS));
        };
        signal.addEventListener('abort', stop, { once: true });
        wait(ms);
      });
    }),

    cancellations: unary((payload: Buffer) => {
      if (payload.length !== 0) throw malformed('cancellations expects an empty request');
      return String(state.cancellations);
    }),

    callback: unary(async (payload: Buffer, ctx: HandlerContext) => {
      const peer = ctx.peer as Peer;
      return peer.callMessage('testee', 'echo', { payload, text: ctx.text }, { signal: ctx.signal });
    }),

    goaway: unary((payload: Buffer, ctx: HandlerContext) => {
      if (payload.length !== 0) throw malformed('goaway expects an empty request');
      // The empty OK is written when this returns; the GOAWAY goes right after it.
      queueMicrotask(() => void (ctx.peer as Peer).close());
    }),
  };
}
