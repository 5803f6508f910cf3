/**
 * The lifecycle of one connection (spec/PROTOCOL.md §9 GOAWAY, §10 ERROR): one explicit
 * state, its transitions, and what each state allows, as tables (after h11's `_state.py`).
 *
 *   state            we open calls   we serve new REQUESTs    it ends when
 *   ---------------  --------------  -----------------------  ------------------------------
 *   OPEN             yes             yes                      GOAWAY is sent or received
 *   GOAWAY_SENT      no              no: discarded, §9.2      the peer's GOAWAY arrives
 *   GOAWAY_RECEIVED  no, §9.3        yes                      ours is sent: at once, §9.3
 *   DRAINING         no              no: discarded            no call is left either way, §9.4
 *   CLOSED           no: they fail   nothing is read          (final)
 *
 * In every state but CLOSED, calls already open in either direction run to their end, and
 * CREDIT, CANCEL, PING and PONG keep flowing (§9.3).
 *
 *   OPEN             --SEND_GOAWAY-->  GOAWAY_SENT
 *   OPEN             --RECV_GOAWAY-->  GOAWAY_RECEIVED
 *   GOAWAY_SENT      --RECV_GOAWAY-->  DRAINING
 *   GOAWAY_RECEIVED  --SEND_GOAWAY-->  DRAINING
 *   DRAINING         --FINISHED----->  CLOSED   the clean close: nothing can be lost
 *   any but CLOSED   --FAIL--------->  CLOSED   ERROR sent or received, transport lost,
 *                                               close() or destroy()
 *
 * An event a state has no row for is refused. RECV_GOAWAY in GOAWAY_RECEIVED or DRAINING is
 * the peer's second GOAWAY (E_SECOND_GOAWAY); SEND_GOAWAY there means we already sent ours,
 * which the session checks before it writes one. GOAWAY_RECEIVED lasts only while the
 * session handles the peer's GOAWAY: it answers with its own before reading the next frame.
 */

export type State = 'OPEN' | 'GOAWAY_SENT' | 'GOAWAY_RECEIVED' | 'DRAINING' | 'CLOSED';
export type LifecycleEvent = 'SEND_GOAWAY' | 'RECV_GOAWAY' | 'FINISHED' | 'FAIL';

const TRANSITIONS: Readonly<Record<State, Readonly<Partial<Record<LifecycleEvent, State>>>>> = {
  OPEN: { SEND_GOAWAY: 'GOAWAY_SENT', RECV_GOAWAY: 'GOAWAY_RECEIVED', FAIL: 'CLOSED' },
  GOAWAY_SENT: { RECV_GOAWAY: 'DRAINING', FAIL: 'CLOSED' },
  GOAWAY_RECEIVED: { SEND_GOAWAY: 'DRAINING', FAIL: 'CLOSED' },
  DRAINING: { FINISHED: 'CLOSED', FAIL: 'CLOSED' },
  CLOSED: {},
};

/** What each state allows; the columns of the first table above. */
export interface Allows {
  /** We may send new REQUESTs (calls opened otherwise fail at once and are not sent). */
  readonly openCalls: boolean;
  /** A new REQUEST from the peer is served; otherwise it is discarded unanswered (§9.2). */
  readonly serveRequests: boolean;
  /** The connection is finished once no call is left either way (§9.4). */
  readonly finishWhenIdle: boolean;
}

export const ALLOWS: Readonly<Record<State, Allows>> = {
  OPEN: { openCalls: true, serveRequests: true, finishWhenIdle: false },
  GOAWAY_SENT: { openCalls: false, serveRequests: false, finishWhenIdle: false },
  GOAWAY_RECEIVED: { openCalls: false, serveRequests: true, finishWhenIdle: false },
  DRAINING: { openCalls: false, serveRequests: false, finishWhenIdle: true },
  CLOSED: { openCalls: false, serveRequests: false, finishWhenIdle: false },
};

/** The state `event` leads to from `state`, or undefined when the state has no row for it. */
export function transition(state: State, event: LifecycleEvent): State | undefined {
  return TRANSITIONS[state][event];
}
