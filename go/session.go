// The session: the sans-IO state machine of one pipit connection.
//
// Theory of operation
//
// Decoded frames and the current time go in through Receive; the user's actions come in
// through Call, Cancel, Consumed and Starved (calls we open), Respond, Send and Finish
// (calls we serve), Ping, GoAway, End and Abort. Frames to write come out of TakeOutput,
// what the user must act on comes out of PollEvents, and NextDeadline says when to call
// Tick. The session starts no goroutine, takes no lock, reads no clock and does no I/O:
// Conn (conn.go) does, and serializes access with its mutex. Two sessions joined in memory
// are a complete, deterministic test bed.
//
// This file is frame dispatch and the connection's lifecycle. The session's other rooms:
//
//	caller.go        the calls we open (s.out, by our id): open, queue, send, settle, release
//	window.go        the credit window of a stream call we opened (§8.6)
//	responder.go     the calls we serve (s.inc, by the peer's id): dispatch, run, respond,
//	                 finish; calltable.go holds them
//	routes.go        the Router and the built-in introspection method (§8.11)
//	lifecycle.go     the connection's state: OPEN, GOAWAY sent or received, DRAINING, CLOSED
//	output.go        the frames to write, and large payloads referenced, not copied
//	fragments.go     the rest of messages larger than a frame, a budget at a time (§8.7)
//	backpressure.go  congested output: requests held, producers wait (§15)
//	reassembly.go    messages arriving in fragments, under one byte budget, and the copies
//	                 of payloads handed out
//	deadlines.go     every call's deadline, both directions, for NextDeadline and Tick
//	bufpool.go       the memory of large requests, reused once they are served (Served)
//
// Frames for our calls (RESPONSE, STATUS) go to the caller, frames for the calls we serve
// (REQUEST, DATA, CREDIT, CANCEL) to the responder; HELLO, PING, PONG, GOAWAY and ERROR are
// the connection's and are handled here.
//
// Rule 1: every call ends with exactly one outcome on each side. On ours, settle is the
// only place an outcome is delivered. On the responder's side, one terminal frame is
// written and endIn then ends the call (responder.go).
// Rule 2: the peer breaking the protocol is terminal for the connection (violate): ERROR
// is sent, every call fails with PROTOCOL_ERROR, and nothing after the bad frame is
// processed.
// Rule 3: every buffer the peer can make us grow is capped before it grows: frames by the
// decoder, calls in flight by MaxInflight, reassembly per message and per connection
// (reassembly.go), stream messages by the credit we granted (window.go).
// Rule 4: output is capped the same way (backpressure.go).
//
// Payloads given to the session (Call, Respond, Send) are not copied when large: the
// caller must not modify them afterwards. Payloads the session hands out in events are
// its own, which the receiver may keep.

package pipit

import "time"

// Session is the sans-IO state machine of one pipit connection (the theory of operation
// is at the top of this file). It is not safe for concurrent use.
type Session struct {
	opt    Options
	router Router
	intro  bool

	// The peer's limits: wire defaults until its HELLO arrives (§11.1).
	peerMaxFrame   int
	peerMaxMessage uint64
	peerMaxInfl    int

	// Our calls (caller.go).
	out        []*OutCall
	freeIDs    []uint32 // min-heap of free ids below nextID
	nextID     uint32
	outActive  int
	queue      []*OutCall
	queueHead  int
	queuedLive int
	sentSeq    uint32
	extBuf     []byte

	// Their calls (responder.go).
	inc     inTable
	recvSeq uint32    // REQUEST frames received, mod 2^32: the count our GOAWAY announces
	freeIn  []*InCall // calls over, for reuse (Served)

	// Reassembly (reassembly.go).
	reasmBytes int
	slab       []byte

	// Backpressure (backpressure.go).
	held    []*InCall
	waiters []*InCall
	strikes int
	backlog int

	// Output (output.go, fragments.go).
	obuf     []byte
	spare    []byte
	segs     []outSeg
	segStart int
	bigBytes int
	frags    []*fragment
	// Pooled memory to give back once the output taken with it is written (Served).
	afterWrite, written []*[]byte

	// The connection (lifecycle.go).
	state    state
	closeErr *Error
	framesIn int64     // HELLO is valid only as the first frame (§11.1)
	clock    time.Time // latest time given to the session
	timers   timerHeap
	pings    map[uint32]time.Time
	pingID   uint32

	events []Event
	// inline, when set, starts handlers at once instead of through EventRequest (the
	// scenario runner uses it so that frame order is exact).
	inline func(*InCall)
	// onMessage, when set, takes the messages of our stream calls as they arrive instead
	// of EventCallMessage (Conn: one call per message, not an event).
	onMessage func(c *OutCall, msg []byte)
}

// EventKind says what an Event reports.
type EventKind uint8

// Event kinds.
const (
	// EventCallDone: our call Out is settled, with Payload (a unary result) or Err. Its id
	// may still be held until its terminal frame arrives.
	EventCallDone EventKind = iota + 1
	// EventCallMessage: a message of our stream call Out, in Payload.
	EventCallMessage
	// EventRequest: the peer's call In is complete and its handler should run.
	EventRequest
	// EventAbort: the handler of In should stop (CANCEL, deadline, connection end); Err says why.
	EventAbort
	// EventWake: a producer that got SendWait (or Finish pending) may try again.
	EventWake
	// EventPong: the PONG for PING ID arrived after RTT.
	EventPong
	// EventClosed: the session is closed, cleanly (Err nil) or not.
	EventClosed
)

// Event is something the user of a Session must act on.
type Event struct {
	Kind    EventKind
	Out     *OutCall
	In      *InCall
	Payload []byte
	Err     *Error
	ID      uint32
	RTT     time.Duration
	// Text: the message (EventCallMessage, or EventCallDone's result) carried TEXT.
	Text bool
}

// NewSession returns a session with the given options (zero fields take the defaults)
// serving router (nil: no services). Unless opt.NoHello, HELLO is its first output.
func NewSession(opt Options, router Router) *Session {
	opt.setDefaults()
	s := &Session{
		opt:            opt,
		router:         router,
		intro:          !opt.NoIntrospection,
		peerMaxFrame:   DefaultMaxFrameBytes,
		peerMaxMessage: DefaultMaxMessageBytes,
		peerMaxInfl:    DefaultMaxInflight,
		obuf:           make([]byte, 0, 4096),
		state:          stateOpen,
	}
	if !opt.NoHello {
		s.obuf = AppendHello(s.obuf, ProtocolVersion, []Setting{
			{SettingMaxFrameBytes, uint32(opt.MaxFrameBytes)},
			{SettingMaxMessageBytes, uint32(opt.MaxMessageBytes)},
			{SettingMaxInflight, uint32(opt.MaxInflight)},
		})
	}
	return s
}

// Options returns the session's options, defaults applied.
func (s *Session) Options() Options { return s.opt }

// Closed reports whether the session is closed.
func (s *Session) Closed() bool { return s.state == stateClosed }

// Draining reports whether GOAWAY was sent or received (or the session closed): no new
// calls.
func (s *Session) Draining() bool { return s.state != stateOpen }

// CloseError is the error the session closed with (nil: clean, or not closed).
func (s *Session) CloseError() *Error { return s.closeErr }

// OutgoingCalls is the number of our calls sent (awaiting their terminal frame) or queued.
func (s *Session) OutgoingCalls() int { return s.outActive + s.queuedLive }

// IncomingCalls is the number of the peer's calls held.
func (s *Session) IncomingCalls() int { return s.inc.n }

// PeerMaxFrameBytes is the peer's announced frame limit (65536 until its HELLO).
func (s *Session) PeerMaxFrameBytes() int { return s.peerMaxFrame }

// PollEvents returns the pending events and forgets them. spare (emptied) becomes the
// session's buffer for the next events: pass back the slice of the previous call, cleared,
// and no event is copied.
func (s *Session) PollEvents(spare []Event) []Event {
	ev := s.events
	s.events = spare[:0]
	return ev
}

func (s *Session) emit(e Event) { s.events = append(s.events, e) }

// NextDeadline is when Tick must next be called, if ok.
func (s *Session) NextDeadline() (t time.Time, ok bool) {
	for len(s.timers) > 0 {
		top := &s.timers[0]
		if (top.out != nil && top.out.settled) || (top.in != nil && top.in.settled) {
			s.timers.pop()
			continue
		}
		return top.at, true
	}
	return time.Time{}, false
}

// Receive processes a batch of decoded frames; cerr is the decoder's error after them,
// if any. A codec error or a session violation sends ERROR and closes (§10.2).
func (s *Session) Receive(frames []Frame, cerr error, now time.Time) {
	s.setClock(now)
	for i := range frames {
		if s.state == stateClosed {
			return
		}
		s.framesIn++
		f := &frames[i]
		switch f.Type {
		case TypeRequest:
			s.onRequest(f, now)
		case TypeResponse:
			s.onResponse(f, now)
		case TypeStatus:
			s.onStatus(f, now)
		case TypeCredit:
			s.onCredit(f)
		case TypeCancel:
			s.onCancel(f)
		case TypeData:
			s.onData(f)
		case TypeHello:
			s.onHello(f, now)
		case TypePing:
			if s.congested() {
				s.strikes++
			}
			s.obuf = AppendPong(s.obuf, f.ID)
		case TypePong:
			if t, ok := s.pings[f.ID]; ok {
				delete(s.pings, f.ID)
				s.emit(Event{Kind: EventPong, ID: f.ID, RTT: now.Sub(t)})
			}
		case TypeGoaway:
			s.onGoaway(f, now)
		case TypeError:
			code := Code(f.Code)
			if code == CodeOK {
				code = CodeInternal // an ERROR is never a success (§10.1)
			}
			s.close(&Error{Code: code, Message: "the peer sent ERROR: " + string(f.Body), wire: true})
		}
	}
	if cerr != nil && s.state != stateClosed {
		if ce, ok := cerr.(*CodecError); ok && ce.Code == ErrIncomplete {
			s.End(cerr)
			return
		}
		s.violate(cerr.Error(), cerr)
	}
}

// violate sends ERROR PROTOCOL_ERROR with msg (which starts with the rule's name) and
// closes.
func (s *Session) violate(msg string, cause error) {
	if s.state == stateClosed {
		return
	}
	msg = cutMessage(msg)
	s.obuf = AppendError(s.obuf, uint32(CodeProtocolError), msg)
	s.close(&Error{Code: CodeProtocolError, Message: msg, Cause: cause})
}

func (s *Session) onHello(f *Frame, now time.Time) {
	if f.ID == 0 {
		s.violate(ViolationBadHello+": HELLO with version 0", nil)
		return
	}
	if s.framesIn != 1 {
		s.violate(ViolationBadHello+": HELLO after the first frame", nil)
		return
	}
	f.Settings(func(k, v uint32) {
		v = clampSetting(k, v)
		switch k {
		case SettingMaxFrameBytes:
			s.peerMaxFrame = int(v)
		case SettingMaxMessageBytes:
			s.peerMaxMessage = uint64(v)
		case SettingMaxInflight:
			s.peerMaxInfl = int(min(uint64(v), 1<<31-1))
		}
	})
	s.pump(now)
}

func (s *Session) onGoaway(f *Frame, now time.Time) {
	if s.state.next(evRecvGoaway) == stateNone {
		s.violate(ViolationSecondGoaway+": a second GOAWAY", nil)
		return
	}
	d, ok := s.checkGoaway(f)
	if !ok {
		return
	}
	s.state = s.state.next(evRecvGoaway)
	s.goawayReceived(d, f.Body)
	s.GoAway(CodeOK, "", now)
}

// Tick expires the deadlines due at now.
func (s *Session) Tick(now time.Time) {
	s.setClock(now)
	for len(s.timers) > 0 && !s.timers[0].at.After(now) {
		t := s.timers.pop()
		if t.out != nil {
			if !t.out.settled {
				s.cancelOut(t.out, &Error{Code: CodeDeadlineExceeded, Message: t.out.service + "." + t.out.method + " did not finish before its deadline"})
			}
			continue
		}
		in := t.in
		if !in.settled {
			err := &Error{Code: CodeDeadlineExceeded, Message: "deadline exceeded"}
			s.finishIn(in, CodeDeadlineExceeded, err.Message)
			s.abort(in, err)
		}
	}
}

// Ping sends a PING; its EventPong follows.
func (s *Session) Ping(now time.Time) uint32 {
	s.pingID++
	if s.state == stateClosed {
		return s.pingID
	}
	if s.pings == nil {
		s.pings = make(map[uint32]time.Time)
	}
	s.pings[s.pingID] = now
	s.obuf = AppendPing(s.obuf, s.pingID)
	return s.pingID
}

// GoAway starts a graceful shutdown (§9.2): GOAWAY with the count of requests received,
// no new calls either way, calls in flight finish; the session closes cleanly once GOAWAY
// went both ways and both tables are empty (§9.4).
func (s *Session) GoAway(code Code, msg string, now time.Time) {
	if s.state == stateClosed {
		return
	}
	if next := s.state.next(evSendGoaway); next != stateNone {
		s.state = next
		s.obuf = AppendGoaway(s.obuf, s.recvSeq, uint32(code), cutMessage(msg))
		s.failQueued(&Error{Code: CodeUnavailable, Message: "the connection is closing; the call was not sent"})
		// Requests held for output congestion were received before the GOAWAY: they run.
	}
	s.maybeFinish()
}

// maybeFinish closes the session cleanly once GOAWAY went both ways and no call is left
// in either direction (§9.4).
func (s *Session) maybeFinish() {
	if !s.state.allows().finishWhenIdle || s.outActive > 0 || s.inc.n > 0 || len(s.frags) > 0 {
		return
	}
	s.close(nil)
}

// Finished reports whether the connection finished cleanly (§9.4).
func (s *Session) Finished() bool { return s.state == stateClosed && s.closeErr == nil }

// End tells the session the byte stream ended or failed (cause: the decoder's End error,
// an I/O error, or nil for a clean EOF). Unless the connection had finished, every open
// call fails with CONNECTION_CLOSED (§10.3).
func (s *Session) End(cause error) {
	if s.state == stateClosed {
		return
	}
	s.close(&Error{Code: CodeConnectionClosed, Message: "connection closed", Cause: cause})
}

// Abort closes the session at once with err (nil: CONNECTION_CLOSED), writing nothing more.
func (s *Session) Abort(err *Error) {
	if err == nil {
		err = &Error{Code: CodeConnectionClosed, Message: "connection closed locally"}
	}
	s.close(err)
}

func (s *Session) closedError() *Error {
	e := s.closeErr
	if e == nil {
		return &Error{Code: CodeConnectionClosed, Message: "connection closed"}
	}
	return e
}

// close ends the session: err nil is a clean close (only maybeFinish closes so). Every
// call still open fails.
func (s *Session) close(err *Error) {
	if s.state == stateClosed {
		return
	}
	if err == nil {
		s.state = s.state.next(evFinished)
	} else {
		s.state = s.state.next(evFail)
	}
	s.closeErr = err
	fail := s.closedError()
	for id, c := range s.out {
		if c != nil {
			s.settle(c, nil, fail)
			s.out[id] = nil
		}
	}
	s.out = s.out[:0]
	s.freeIDs = s.freeIDs[:0]
	s.nextID = 0
	s.outActive = 0
	s.failQueued(fail)
	for id, in := range s.inc.all() {
		in.settled = true
		s.abort(in, fail)
		if in.waiting {
			in.waiting = false
			s.emit(Event{Kind: EventWake, In: in})
		}
		s.inc.del(id)
	}
	s.held = nil
	s.waiters = nil
	s.reasmBytes = 0
	clear(s.frags)
	s.frags = s.frags[:0]
	s.timers = nil
	s.pings = nil
	s.emit(Event{Kind: EventClosed, Err: err})
}

func (s *Session) setClock(now time.Time) {
	if now.After(s.clock) {
		s.clock = now
	}
}
