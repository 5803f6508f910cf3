// The calls the peer opens and we serve (spec/PROTOCOL.md §8, the responder's side), from
// their REQUEST to their terminal frame.
//
// A REQUEST is checked (id, credit, MAX_INFLIGHT, deadline, size); a fragmented one is
// reassembled from its DATA frames (reassembly.go). The complete request is dispatched: run
// at once, or held while our output is congested (backpressure.go). Running it emits
// EventRequest; the handler's result comes back through Respond (unary), or Send and
// Finish (stream), which write while the caller's credit and our output allow.
//
// s.inc holds the calls being served, by the peer's id. A call leaves it when its terminal
// frame is written; frames that cross that (CANCEL, CREDIT, DATA) find nothing and are
// ignored (§4.3).
//
// Rule 1, responder's side: a terminal frame is written only by finishIn (STATUS), or by
// sendResponse and writeFragments with END (RESPONSE|END), and each of them then ends the
// call through endIn, where it leaves s.inc (close empties s.inc at once).

package pipit

import (
	"errors"
	"strconv"
	"time"
)

// Request is what a handler receives. It is the handler's to keep, unless the connection
// was made with Options.ReuseRequestMemory: then it is valid until the handler returns.
type Request struct {
	Service, Method string
	// Payload is the request message: the handler's to keep, unless the connection reuses
	// request memory (Options.ReuseRequestMemory), which makes it valid until the handler
	// returns (and when the handler returns it, or sends it, until that is written).
	Payload []byte
	// Text: the payload carried the TEXT flag.
	Text bool
	// Stream: the caller made a stream call.
	Stream bool
	// Metadata from the request's ext block (nil when none; the last of a repeated key wins).
	Metadata map[string]string
	// Deadline is when the responder stops the call (zero when the caller set none).
	Deadline time.Time

	replyText bool
	conn      *Conn
}

// InCall is a call the peer opened.
type InCall struct {
	// Tag is free for the session's user.
	Tag any
	Req Request

	id, seq    uint32
	deadlineMs uint32
	hasDL      bool
	route      Route
	routeCode  Code
	builtin    bool
	badName    string
	credit     int64
	settled    bool
	started    bool
	assembling bool
	reasm      []byte
	waiting    bool
	frag       *fragment
	// a stream call to a unary method waits for a credit to send its folded result
	pending     []byte
	pendingText bool
	hasPending  bool
	// Finish(nil) arrived while a fragmented message was still being written
	finishOK bool
	user     inUser

	// The call's memory, and when it may be reused (Served, retire).
	handed   bool    // EventRequest went out: a handler has the request
	returned bool    // the handler returned (Served)
	reusable bool    // its user left nothing behind that refers to the call
	pooled   *[]byte // the request's memory, from the buffer pool (bufpool.go)
	small    [smallPayload]byte
}

// smallPayload: a request payload up to this size is copied into its InCall, so that a
// recycled call brings its memory with it.
const smallPayload = 128

// freeInCalls bounds the calls kept for reuse.
const freeInCalls = 256

// ID is the peer's id of the call.
func (c *InCall) ID() uint32 { return c.id }

func (s *Session) onRequest(f *Frame, now time.Time) {
	s.recvSeq++
	id := f.ID
	if s.inc.get(id) != nil {
		s.violate(ViolationIDInUse+": REQUEST reuses id "+strconv.FormatUint(uint64(id), 10)+" of a call still in progress", nil)
		return
	}
	if !s.state.allows().serveRequests {
		return // after our GOAWAY: discarded, unanswered (§9.2)
	}
	stream := f.Flags&FlagStream != 0
	var ext Ext
	if f.Flags&FlagExt != 0 {
		ext = f.ParseExt()
	}
	credit := int64(DefaultCredit)
	if ext.HasCredit {
		credit = int64(ext.Credit)
	}
	if stream && credit > MaxCredit {
		s.violate(ViolationCreditOverflow+": initial credit "+strconv.FormatInt(credit, 10)+" of call "+
			strconv.FormatUint(uint64(id), 10)+" exceeds 2147483647", nil)
		return
	}
	if s.inc.n >= s.opt.MaxInflight {
		if s.congested() {
			s.strikes++
		}
		s.obuf = AppendStatus(s.obuf, id, uint32(CodeResourceExhausted), "more than "+strconv.Itoa(s.opt.MaxInflight)+" calls in flight")
		return
	}
	if ext.HasDeadline && ext.DeadlineMs == 0 {
		s.obuf = AppendStatus(s.obuf, id, uint32(CodeDeadlineExceeded), "the deadline had passed when the request was sent")
		return
	}
	in := s.newIn()
	in.id, in.seq, in.credit = id, s.recvSeq, credit
	in.Req.Stream = stream
	in.Req.Text = f.Flags&FlagText != 0
	in.route, in.routeCode = s.lookup(f.Service, f.Method)
	if in.routeCode != CodeOK {
		if in.routeCode == CodeUnknownService {
			in.badName = "unknown service " + strconv.Quote(string(f.Service))
		} else {
			in.badName = "unknown method " + strconv.Quote(string(f.Service)+"."+string(f.Method))
		}
	}
	in.Req.Service, in.Req.Method = in.route.Service, in.route.Method
	s.inc.put(id, in)
	if ext.HasDeadline {
		in.deadlineMs, in.hasDL = ext.DeadlineMs, true
		in.Req.Deadline = now.Add(time.Duration(ext.DeadlineMs) * time.Millisecond)
		s.timers.push(timer{at: in.Req.Deadline, in: in})
	}
	if ext.HasMetadata {
		md := make(map[string]string)
		f.Metadata(func(k, v []byte) { md[string(k)] = string(v) })
		in.Req.Metadata = md
	}
	if len(f.Body) > s.opt.MaxMessageBytes {
		s.finishIn(in, CodeResourceExhausted, "request exceeds maxMessageBytes "+strconv.Itoa(s.opt.MaxMessageBytes))
		return
	}
	if f.Flags&FlagFollows != 0 {
		in.assembling = true
		if !s.reasmAdd(&in.reasm, f.Body) {
			s.finishIn(in, CodeResourceExhausted, "request exceeds maxMessageBytes "+strconv.Itoa(s.opt.MaxMessageBytes)+" or the reassembly budget")
		}
		return
	}
	switch {
	case f.Owned:
		in.Req.Payload = s.keep(f)
		in.pooled = f.pooled
	case len(f.Body) > 0 && len(f.Body) <= smallPayload:
		in.Req.Payload = in.small[:copy(in.small[:], f.Body):len(f.Body)]
	default:
		in.Req.Payload = s.clone(f.Body)
	}
	s.dispatch(in)
}

func (s *Session) onData(f *Frame) {
	in := s.inc.get(f.ID)
	if in == nil {
		return // crossed a refusal or a GOAWAY discard (§4.3)
	}
	if !in.assembling {
		s.violate(ViolationDataComplete+": DATA for call "+strconv.FormatUint(uint64(f.ID), 10)+" whose request is complete", nil)
		return
	}
	if !s.reasmAdd(&in.reasm, f.Body) {
		s.finishIn(in, CodeResourceExhausted, "request exceeds maxMessageBytes "+strconv.Itoa(s.opt.MaxMessageBytes)+" or the reassembly budget")
		return
	}
	if f.Flags&FlagFollows == 0 {
		in.assembling = false
		in.Req.Payload = s.reasmTake(&in.reasm)
		s.dispatch(in)
	}
}

// dispatch runs a complete request, or holds it while output is congested (§15).
func (s *Session) dispatch(in *InCall) {
	if s.congested() || len(s.held) > 0 {
		s.held = append(s.held, in)
		return
	}
	s.run(in)
}

func (s *Session) run(in *InCall) {
	if in.settled {
		return
	}
	switch {
	case in.routeCode != CodeOK:
		s.finishIn(in, in.routeCode, in.badName)
	case !in.Req.Stream && in.route.Kind == KindStream:
		s.finishIn(in, CodeInvalidArgument, "")
	case in.route.Service == introService:
		var b []byte
		if s.router != nil {
			b = s.router.AppendMethods(nil)
		}
		if b == nil {
			b = []byte{}
		}
		s.Respond(in, b, false, nil)
	default:
		in.started = true
		in.handed = true
		if s.inline != nil {
			s.inline(in)
			return
		}
		s.emit(Event{Kind: EventRequest, In: in})
	}
}

func (s *Session) onCancel(f *Frame) {
	in := s.inc.get(f.ID)
	if in == nil {
		return
	}
	err := &Error{Code: CodeCancelled, Message: "the caller cancelled the call"}
	s.finishIn(in, CodeCancelled, err.Message)
	s.abort(in, err)
}

func (s *Session) abort(in *InCall, err *Error) {
	if in.started {
		in.started = false
		s.emit(Event{Kind: EventAbort, In: in, Err: err})
	}
}

func (s *Session) onCredit(f *Frame) {
	in := s.inc.get(f.ID)
	if in == nil || !in.Req.Stream {
		return
	}
	if in.credit+int64(f.Code) > MaxCredit {
		s.violate(ViolationCreditOverflow+": credit of call "+strconv.FormatUint(uint64(f.ID), 10)+" exceeds 2147483647", nil)
		return
	}
	in.credit += int64(f.Code)
	s.afterFragment(in)
}

// afterFragment: the producer of in may be able to go on.
func (s *Session) afterFragment(in *InCall) {
	if in.settled {
		return
	}
	if in.hasPending && in.credit > 0 && in.frag == nil {
		in.hasPending = false
		p := in.pending
		in.pending = nil
		in.credit--
		s.sendResponse(in, p, in.pendingText, FlagEnd)
		return
	}
	s.wake(in)
}

func (s *Session) wake(in *InCall) {
	if in.waiting {
		in.waiting = false
		s.emit(Event{Kind: EventWake, In: in})
	}
}

// Respond ends the peer's call in with a handler's result: payload (TEXT when text), or
// err. For a stream call the result is one message folded with END (§8.10). payload is
// not copied when large: do not modify it afterwards.
func (s *Session) Respond(in *InCall, payload []byte, text bool, err error) {
	if in.settled || s.state == stateClosed {
		return
	}
	if err != nil {
		code, msg := statusOf(err)
		s.finishIn(in, code, msg)
		return
	}
	if in.Req.Stream {
		if in.credit <= 0 || in.frag != nil {
			in.pending, in.pendingText, in.hasPending = payload, text, true
			return
		}
		in.credit--
	}
	s.sendResponse(in, payload, text, FlagEnd)
}

// SendResult says what Send did.
type SendResult uint8

// Send results.
const (
	// SendOK: the message is written (or queued as fragments).
	SendOK SendResult = iota
	// SendWait: no credit, output congested, or the previous message still being written;
	// an EventWake for the call follows when it may go on.
	SendWait
	// SendEnded: the call is over (cancelled, deadline, connection closed); stop producing.
	SendEnded
)

// Send writes one message of the stream call in. payload is not copied when large: do not
// modify it afterwards.
func (s *Session) Send(in *InCall, payload []byte, text bool) SendResult {
	if in.settled || s.state == stateClosed {
		return SendEnded
	}
	full := s.congested() || s.Pending() >= producerBatch
	if in.credit <= 0 || in.frag != nil || full {
		if !in.waiting {
			in.waiting = true
			if full {
				s.waiters = append(s.waiters, in)
			}
		}
		return SendWait
	}
	in.credit--
	s.sendResponse(in, payload, text, 0)
	if in.settled {
		return SendEnded
	}
	return SendOK
}

// Finish ends the stream call in: STATUS OK when err is nil (after the last message is
// written), else the status of err (§13.2).
func (s *Session) Finish(in *InCall, err error) {
	if in.settled || s.state == stateClosed {
		return
	}
	if err == nil {
		if in.frag != nil {
			in.finishOK = true
			return
		}
		s.finishIn(in, CodeOK, "")
		return
	}
	code, msg := statusOf(err)
	s.finishIn(in, code, msg)
}

func (s *Session) sendResponse(in *InCall, p []byte, text bool, end Flags) {
	if uint64(len(p)) > s.peerMaxMessage {
		s.finishIn(in, CodeResourceExhausted, "response of "+strconv.Itoa(len(p))+" bytes exceeds the peer's maxMessageBytes "+
			strconv.FormatUint(s.peerMaxMessage, 10))
		return
	}
	fl := end
	if text {
		fl |= FlagText
	}
	room := s.peerMaxFrame - WordBytes - MaxVarintBytes
	if len(p) > room {
		s.obuf = AppendHeader(s.obuf, TypeResponse, fl&FlagText|FlagFollows, in.id, room)
		s.appendPayload(p[:room])
		in.frag = &fragment{in: in, id: in.id, data: p, pos: room, end: end}
		s.frags = append(s.frags, in.frag)
		return
	}
	s.obuf = AppendHeader(s.obuf, TypeResponse, fl, in.id, len(p))
	s.appendPayload(p)
	if end != 0 {
		s.endIn(in)
	}
}

// finishIn writes the terminal STATUS of in (the only place one is written).
func (s *Session) finishIn(in *InCall, code Code, msg string) {
	if in.settled {
		return
	}
	if s.state == stateClosed {
		s.endIn(in)
		return
	}
	if in.frag != nil {
		s.dropFrag(in.frag)
		in.frag = nil
	}
	s.obuf = AppendStatus(s.obuf, in.id, uint32(code), cutMessage(msg))
	s.endIn(in)
}

func (s *Session) endIn(in *InCall) {
	if in.settled {
		return
	}
	in.settled = true
	if s.inc.get(in.id) == in {
		s.inc.del(in.id)
	}
	if in.reasm != nil {
		s.reasmDrop(&in.reasm)
	}
	in.pending = nil
	s.wake(in)
	if in.returned {
		s.retire(in)
	}
	s.maybeFinish()
}

// Served tells the session that the handler of in has returned (after its Respond or
// Finish): the request is no longer used. reusable says that nothing the session's user
// handed the handler (its context) can still refer to in. Once the call is over, its
// memory is reused: the InCall at once, a pooled payload once the output written until
// then is written (Recycle).
func (s *Session) Served(in *InCall, reusable bool) {
	in.returned, in.reusable = true, reusable
	if in.settled {
		s.retire(in)
	}
}

// retire recycles the memory of a call that is over and whose handler returned, when the
// user allowed it (Options.ReuseRequestMemory): otherwise the handler may have kept it.
func (s *Session) retire(in *InCall) {
	if !s.opt.ReuseRequestMemory {
		in.pooled = nil
		return
	}
	if in.pooled != nil {
		s.afterWrite = append(s.afterWrite, in.pooled)
		in.pooled = nil
	}
	// The session refers to a call no more once it left s.inc, except from a deadline
	// (deadlines.go) or, for a stream, the producers waiting for output (backpressure.go).
	if !in.reusable || !in.handed || in.hasDL || in.Req.Stream || s.inc.get(in.id) == in || len(s.freeIn) >= freeInCalls {
		return
	}
	*in = InCall{}
	s.freeIn = append(s.freeIn, in)
}

// newIn returns a recycled InCall, or a new one.
func (s *Session) newIn() *InCall {
	if n := len(s.freeIn); n > 0 {
		in := s.freeIn[n-1]
		s.freeIn[n-1] = nil
		s.freeIn = s.freeIn[:n-1]
		return in
	}
	return new(InCall)
}

// statusOf maps a handler's error to the status sent (§13.2).
func statusOf(err error) (Code, string) {
	var e *Error
	if errors.As(err, &e) {
		if handlerMaySend(e.Code) && !(e.wire && e.Code < CodeApplicationMin && e.Code > CodeInternal) {
			return e.Code, e.Message
		}
		return CodeApplicationError, e.Message
	}
	return CodeApplicationError, err.Error()
}
