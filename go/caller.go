// The calls we open (spec/PROTOCOL.md §8, the caller's side), from Call to the terminal
// frame.
//
// Call checks a call and sends it at once, or queues it while the peer's MAX_INFLIGHT is
// reached, our output is congested (backpressure.go) or earlier calls wait (the queue keeps
// their order). send gives it an id and a sequence number (§9.1) and writes the REQUEST;
// the rest of a large request goes to the fragments (fragments.go). Response frames come
// back through onResponse and onStatus.
//
// Ids: s.out is indexed by id, and free ids are reused smallest first (a min-heap), so
// they stay one byte. An id is released only when the call's terminal frame (RESPONSE|END
// or STATUS) arrives, or the peer's GOAWAY says the call was discarded (§9.3); never when
// the user gave up on it (deadline, cancel): until its terminal frame, a late frame for it
// must still find it. release is where an id is freed, and it drops the call's unwritten
// DATA with it (§8.7).
//
// Rule 1, caller's side: settle is the only place an outcome is delivered (EventCallDone).
// It checks settled first, so a call that ends in several ways at once (its response, its
// deadline, a cancel, the connection) reports exactly one of them.

package pipit

import (
	"strconv"
	"time"
)

// CallOptions are the per-call settings of Session.Call.
type CallOptions struct {
	Stream bool
	Text   bool
	// Credit is the stream window; 0 means the session's InitialCredit.
	Credit int
	// Deadline, when not zero, travels as DEADLINE (time left, rounded up to ms).
	Deadline time.Time
	Metadata []MetadataEntry
}

// OutCall is a call we opened.
type OutCall struct {
	// Tag is free for the session's user (Conn keeps its own call state there).
	Tag any

	service, method string
	payload         []byte
	flags           Flags
	md              []MetadataEntry
	deadline        time.Time
	stream          bool

	id      uint32
	seq     uint32
	sent    bool
	queued  bool
	settled bool
	// response state
	inMsg        bool // a fragmented response message is arriving
	text         bool // the last response message started with TEXT
	hasMsg       bool // unary: a message arrived
	msg          []byte
	reasm        []byte
	streamWindow // stream calls: the credit granted (window.go)
	frag         *fragment
	released     bool // its terminal frame arrived: the session holds it no more
}

// Reusable reports whether the session no longer refers to c, so that its owner may reuse
// it: it was sent without a deadline and its terminal frame arrived.
func (c *OutCall) Reusable() bool { return c.released && c.sent && c.deadline.IsZero() }

// ID is the call's id while it is open on the wire.
func (c *OutCall) ID() uint32 { return c.id }

// allocID takes the smallest free id (§4.1).
func (s *Session) allocID() uint32 {
	h := s.freeIDs
	if len(h) == 0 {
		id := s.nextID
		s.nextID++
		return id
	}
	id := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	for i := 0; ; {
		c := 2*i + 1
		if c >= n {
			break
		}
		if c+1 < n && h[c+1] < h[c] {
			c++
		}
		if h[i] <= h[c] {
			break
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
	s.freeIDs = h
	return id
}

// freeID gives id back.
func (s *Session) freeID(id uint32) {
	if id+1 == s.nextID {
		s.nextID--
		return
	}
	h := append(s.freeIDs, id)
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if h[p] <= h[i] {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
	s.freeIDs = h
}

// Call opens a call. Its outcome arrives as events naming c. payload is not copied when
// large: do not modify it afterwards.
func (s *Session) Call(c *OutCall, service, method string, payload []byte, o CallOptions, now time.Time) {
	s.setClock(now)
	c.service, c.method, c.payload, c.md = service, method, payload, o.Metadata
	c.stream = o.Stream
	c.deadline = o.Deadline
	if o.Stream {
		c.flags |= FlagStream
	}
	if o.Text {
		c.flags |= FlagText
	}
	if len(service) > MaxNameBytes || len(method) > MaxNameBytes {
		s.settle(c, nil, &Error{Code: CodeInvalidArgument, Message: "service and method names are limited to 255 bytes"})
		return
	}
	// Names and the ext block must fit in the first frame (§7.2): bound them by the
	// smallest frame limit a peer may have.
	head := WordBytes + MaxVarintBytes + 2 + len(service) + len(method) + MaxVarintBytes + 2*(2+MaxVarintBytes)
	for _, m := range o.Metadata {
		if len(m.Key) > MaxNameBytes {
			s.settle(c, nil, &Error{Code: CodeInvalidArgument, Message: "metadata keys are limited to 255 bytes"})
			return
		}
		head += 1 + MaxVarintBytes + 1 + len(m.Key) + len(m.Value)
	}
	if head > MinMaxFrameBytes {
		s.settle(c, nil, &Error{Code: CodeInvalidArgument, Message: "names and metadata do not fit in one frame of " + strconv.Itoa(MinMaxFrameBytes) + " bytes"})
		return
	}
	if o.Stream {
		w := o.Credit
		if w <= 0 {
			w = s.opt.InitialCredit
			c.adaptive = true
		}
		if w > MaxCredit {
			w = MaxCredit
		}
		c.window, c.credit = int64(w), int64(w)
	}
	if s.state == stateClosed && s.closeErr != nil {
		s.settle(c, nil, s.closedError())
		return
	}
	if s.Draining() {
		s.settle(c, nil, &Error{Code: CodeUnavailable, Message: "the connection is going away; the call was not sent"})
		return
	}
	if !o.Deadline.IsZero() && !now.Before(o.Deadline) {
		s.settle(c, nil, &Error{Code: CodeDeadlineExceeded, Message: "the deadline passed before the call was sent"})
		return
	}
	if uint64(len(payload)) > s.peerMaxMessage {
		s.settle(c, nil, &Error{Code: CodeResourceExhausted, Message: "request of " + strconv.Itoa(len(payload)) +
			" bytes exceeds the peer's maxMessageBytes " + strconv.FormatUint(s.peerMaxMessage, 10) + "; not sent"})
		return
	}
	if !o.Deadline.IsZero() {
		s.timers.push(timer{at: o.Deadline, out: c})
	}
	if s.outActive >= s.peerMaxInfl || s.congested() || s.queuedLive > 0 {
		if s.queuedLive >= s.opt.MaxQueuedCalls {
			s.settle(c, nil, &Error{Code: CodeResourceExhausted, Message: strconv.Itoa(s.opt.MaxQueuedCalls) + " calls already queued"})
			return
		}
		c.queued = true
		s.queuedLive++
		s.queue = append(s.queue, c)
		return
	}
	s.send(c, now)
}

// send allocates an id and writes the REQUEST, queueing further fragments.
func (s *Session) send(c *OutCall, now time.Time) {
	var ext []byte
	if !c.deadline.IsZero() || (c.stream && c.window != DefaultCredit) || len(c.md) > 0 {
		var ms uint32
		hasDL := false
		if !c.deadline.IsZero() {
			left := c.deadline.Sub(now)
			if left <= 0 {
				s.settle(c, nil, &Error{Code: CodeDeadlineExceeded, Message: "the deadline passed while the call was queued; not sent"})
				return
			}
			msl := (left + time.Millisecond - 1) / time.Millisecond
			if msl <= 0xFFFFFFFF {
				ms, hasDL = uint32(msl), true
			}
		}
		s.extBuf = AppendExt(s.extBuf[:0], ms, hasDL, uint32(c.window), c.stream && c.window != DefaultCredit, c.md)
		ext = s.extBuf
	}
	id := s.allocID()
	c.id = id
	s.sentSeq++
	c.seq = s.sentSeq
	c.sent = true
	for int(id) >= len(s.out) {
		s.out = append(s.out, nil)
	}
	s.out[id] = c
	s.outActive++
	p := c.payload
	room := s.peerMaxFrame - RequestHeaderSize(id, c.service, c.method, ext)
	if len(p) <= room {
		s.obuf = AppendRequestHeader(s.obuf, id, c.flags, c.service, c.method, ext, len(p))
		s.appendPayload(p)
		c.payload = nil
		return
	}
	s.obuf = AppendRequestHeader(s.obuf, id, c.flags|FlagFollows, c.service, c.method, ext, room)
	s.appendPayload(p[:room])
	c.frag = &fragment{out: c, id: id, data: p, pos: room}
	s.frags = append(s.frags, c.frag)
}

// Cancel ends our call for the user with err (CANCELLED, DEADLINE_EXCEEDED...) and sends
// CANCEL; the id stays held until the terminal frame arrives (§8.4).
func (s *Session) Cancel(c *OutCall, err *Error) { s.cancelOut(c, err) }

func (s *Session) cancelOut(c *OutCall, err *Error) {
	if c.settled {
		return
	}
	s.settle(c, nil, err)
	if !c.sent || s.state == stateClosed || c.id >= uint32(len(s.out)) || s.out[c.id] != c {
		return
	}
	if c.frag != nil {
		s.dropFrag(c.frag)
		c.frag = nil
	}
	s.obuf = AppendCancel(s.obuf, c.id)
}

func (s *Session) settle(c *OutCall, payload []byte, err *Error) {
	if c.settled {
		return
	}
	c.settled = true
	if c.queued {
		c.queued = false
		s.queuedLive--
	}
	if c.reasm != nil {
		s.reasmBytes -= len(c.reasm)
		c.reasm = nil
	}
	c.msg = nil
	s.emit(Event{Kind: EventCallDone, Out: c, Payload: payload, Err: err, Text: c.text && err == nil && payload != nil})
}

// release frees the id of c once its terminal frame arrived.
func (s *Session) release(c *OutCall, now time.Time) {
	c.released = true
	s.out[c.id] = nil
	s.freeID(c.id)
	s.outActive--
	if c.frag != nil {
		s.dropFrag(c.frag)
		c.frag = nil
	}
	if c.reasm != nil {
		s.reasmBytes -= len(c.reasm)
		c.reasm = nil
	}
	s.pump(now)
	s.maybeFinish()
}

// pump sends queued calls while the peer's MAX_INFLIGHT and our output allow.
func (s *Session) pump(now time.Time) {
	for s.queueHead < len(s.queue) && s.outActive < s.peerMaxInfl && !s.congested() && s.state.allows().openCalls {
		c := s.queue[s.queueHead]
		s.queue[s.queueHead] = nil
		s.queueHead++
		if s.queueHead == len(s.queue) {
			s.queue, s.queueHead = s.queue[:0], 0
		}
		if c.settled {
			continue
		}
		c.queued = false
		s.queuedLive--
		s.send(c, now)
	}
}

func (s *Session) failQueued(err *Error) {
	for ; s.queueHead < len(s.queue); s.queueHead++ {
		c := s.queue[s.queueHead]
		s.queue[s.queueHead] = nil
		s.settle(c, nil, err)
	}
	s.queue, s.queueHead = s.queue[:0], 0
}

func (s *Session) onResponse(f *Frame, now time.Time) {
	c := s.outCall(f.ID)
	if c == nil {
		s.violate(ViolationNoSuchCall+": RESPONSE for call "+strconv.FormatUint(uint64(f.ID), 10)+", which is not open", nil)
		return
	}
	cont := c.inMsg
	if cont {
		if f.Flags&FlagText != 0 {
			s.violate(ViolationTextContinuation+": TEXT on a continuation fragment of call "+strconv.FormatUint(uint64(f.ID), 10), nil)
			return
		}
	} else if !c.stream {
		if c.hasMsg {
			s.violate(ViolationSecondMessage+": second response message on unary call "+strconv.FormatUint(uint64(f.ID), 10), nil)
			return
		}
	} else {
		if c.credit <= 0 {
			s.violate(ViolationNoCredit+": stream message on call "+strconv.FormatUint(uint64(f.ID), 10)+" beyond the credit granted", nil)
			return
		}
		c.credit--
	}
	if !cont {
		c.text = f.Flags&FlagText != 0
	}
	follows := f.Flags&FlagFollows != 0
	end := f.Flags&FlagEnd != 0
	var msg []byte
	tooBig := func() *Error {
		return &Error{Code: CodeResourceExhausted, Message: "response exceeds maxMessageBytes " + strconv.Itoa(s.opt.MaxMessageBytes)}
	}
	if cont || follows {
		c.inMsg = follows
		if !c.settled && !s.reasmAdd(&c.reasm, f.Body) {
			s.cancelOut(c, tooBig())
		}
		if follows {
			return
		}
		if !c.settled {
			msg = s.reasmTake(&c.reasm)
		}
	} else if !c.settled {
		if len(f.Body) > s.opt.MaxMessageBytes {
			if end {
				s.settle(c, nil, tooBig())
			} else {
				s.cancelOut(c, tooBig())
			}
		} else {
			msg = s.keep(f)
		}
	}
	if c.stream {
		if !c.settled {
			c.itemsIn++
			c.bytesIn += int64(len(msg))
			if s.onMessage != nil {
				s.onMessage(c, msg)
			} else {
				s.emit(Event{Kind: EventCallMessage, Out: c, Payload: msg, Text: c.text})
			}
		}
		if end {
			s.settle(c, nil, nil)
			s.release(c, now)
		}
		return
	}
	c.hasMsg = true
	if end {
		s.settle(c, msg, nil)
		s.release(c, now)
		return
	}
	if !c.settled {
		c.msg = msg
	}
}

func (s *Session) outCall(id uint32) *OutCall {
	if id < uint32(len(s.out)) {
		return s.out[id]
	}
	return nil
}

func (s *Session) onStatus(f *Frame, now time.Time) {
	c := s.outCall(f.ID)
	if c == nil {
		s.violate(ViolationNoSuchCall+": STATUS for call "+strconv.FormatUint(uint64(f.ID), 10)+", which is not open", nil)
		return
	}
	code := Code(f.Code)
	if code == CodeOK {
		if c.inMsg && !c.settled {
			s.violate(ViolationOKMidMessage+": STATUS OK on call "+strconv.FormatUint(uint64(f.ID), 10)+" in the middle of a fragmented message", nil)
			return
		}
		msg := c.msg
		if !c.stream && msg == nil {
			msg = []byte{}
		}
		s.settle(c, msg, nil)
	} else {
		s.settle(c, nil, &Error{Code: code, Message: string(f.Body), wire: true})
	}
	s.release(c, now)
}

// checkGoaway checks the peer's GOAWAY f and returns how many of the requests we sent it
// discarded: the last d sent, each of which must still be open here (§9.3). A GOAWAY that
// does not fit is a violation.
func (s *Session) checkGoaway(f *Frame) (d uint32, ok bool) {
	d = s.sentSeq - f.ID
	if d >= 1<<31 {
		s.violate(ViolationBadGoaway+": GOAWAY "+strconv.FormatUint(uint64(f.ID), 10)+" counts more requests than the "+
			strconv.FormatUint(uint64(s.sentSeq), 10)+" sent", nil)
		return 0, false
	}
	open := uint32(0)
	for _, c := range s.out {
		if c != nil && s.sentSeq-c.seq < d {
			open++
		}
	}
	if open != d {
		s.violate(ViolationBadGoaway+": GOAWAY "+strconv.FormatUint(uint64(f.ID), 10)+" discards "+
			strconv.FormatUint(uint64(d), 10)+" requests, of which only "+strconv.FormatUint(uint64(open), 10)+" are open", nil)
		return 0, false
	}
	return d, true
}

// goawayReceived fails the last d requests sent, which the peer discarded, with UNAVAILABLE
// (they may be retried elsewhere) and frees their ids, and fails every queued call.
func (s *Session) goawayReceived(d uint32, body []byte) {
	msg := "the peer is going away; the call was not processed"
	if len(body) > 0 {
		msg = "the peer is going away (" + string(body) + "); the call was not processed"
	}
	for id, c := range s.out {
		if c == nil || s.sentSeq-c.seq >= d {
			continue
		}
		if c.frag != nil {
			s.dropFrag(c.frag)
			c.frag = nil
		}
		s.settle(c, nil, &Error{Code: CodeUnavailable, Message: msg})
		if c.reasm != nil {
			s.reasmDrop(&c.reasm)
		}
		s.out[id] = nil
		s.freeID(uint32(id))
		s.outActive--
	}
	s.failQueued(&Error{Code: CodeUnavailable, Message: "the peer is going away; the call was not sent"})
}
