package pipit

import (
	"errors"
	"strconv"
	"time"
)

// Session is the sans-IO state machine of one pipit connection.
//
// Frames and the current time go in (Receive, Tick, End, and the API calls Call, Cancel,
// Consumed, Respond, Send, Finish, GoAway); frames to write come out of TakeOutput, what
// the user must learn comes out of PollEvents, and NextDeadline says when to call Tick.
// The session starts no goroutine, takes no lock, reads no clock and does no I/O, so two
// sessions joined in memory are a complete, deterministic test bed. It is not safe for
// concurrent use: Conn serializes access with a mutex.
//
// Two call tables, one per direction (§4): out holds the calls we opened, indexed by our
// id, and inc the calls the peer opened, keyed by its id. An out id is released only when
// the call's terminal frame arrives, even if the user already saw a timeout or a cancel;
// an inc id is released when we write the terminal frame.
//
// Payloads given to the session (Call, Respond, Send) are not copied when large: the
// caller must not modify them afterwards. Payloads the session hands out in events are
// its own copies, which the receiver may keep.
type Session struct {
	opt    Options
	router Router
	intro  bool

	// The peer's limits: wire defaults until its HELLO arrives (§11.1).
	peerMaxFrame   int
	peerMaxMessage uint64
	peerMaxInfl    int

	// ---- our calls ----
	out        []*OutCall
	freeIDs    []uint32 // min-heap of free ids below nextID
	nextID     uint32
	outActive  int
	queue      []*OutCall
	queueHead  int
	queuedLive int
	sentSeq    uint32
	extBuf     []byte

	// ---- their calls ----
	inc        inTable
	recvSeq    uint32
	reasmBytes int
	held       []*InCall
	waiters    []*InCall
	strikes    int

	// ---- connection ----
	phase          phase
	goawaySent     bool
	goawayReceived bool
	finished       bool
	closeErr       *Error
	framesIn       int64
	clock          time.Time // latest time given to the session
	timers         timerHeap
	pings          map[uint32]time.Time
	pingID         uint32

	slab []byte

	// ---- output ----
	obuf     []byte
	spare    []byte
	segs     []outSeg
	segStart int
	bigBytes int
	backlog  int
	frags    []*fragment

	events []Event
	// onRequest, when set, starts handlers inline instead of through EventRequest (the
	// scenario runner uses it so that frame order is exact).
	inline func(*InCall)
}

type phase uint8

const (
	phaseOpen phase = iota
	phaseDraining
	phaseClosed
)

// bigPayload: payloads this large or larger are written from where they are, not copied.
const bigPayload = 2048

// producerBatch: a stream producer waits while this much output is not yet taken by the
// writer, so that a fast producer fills one write's worth and no more (the write buffer
// limit, MaxWriteBufferBytes, is for everything else).
const producerBatch = 64 << 10

// fragmentBudget: bytes of large-message fragments written per TakeOutput, so that small
// frames interleave with them.
const fragmentBudget = 256 << 10

// MethodKind says what a method produces (§8.10, §8.11).
type MethodKind uint8

// Method kinds.
const (
	KindUnknown MethodKind = 0
	KindUnary   MethodKind = 1
	KindStream  MethodKind = 2
)

// Route is a handler found by a Router. Service and Method are the router's own strings,
// so looking a route up allocates nothing.
type Route struct {
	Service, Method string
	Kind            MethodKind
	Handler         any
}

// Router finds the handler of an incoming call.
type Router interface {
	// Route returns the route and CodeOK, or CodeUnknownService or CodeUnknownMethod.
	Route(service, method []byte) (Route, Code)
	// AppendMethods appends the introspection answer (§8.11): every method served, sorted.
	AppendMethods(b []byte) []byte
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
	inMsg  bool // a fragmented response message is arriving
	text   bool // the last response message started with TEXT
	hasMsg bool // unary: a message arrived
	msg    []byte
	reasm  []byte
	// stream credit, as the caller counts it (§8.6)
	credit, window, unacked int64
	adaptive                bool
	itemsIn, bytesIn        int64
	frag                    *fragment
	released                bool // its terminal frame arrived: the session holds it no more
}

// Reusable reports whether the session no longer refers to c, so that its owner may reuse
// it: it was sent without a deadline and its terminal frame arrived.
func (c *OutCall) Reusable() bool { return c.released && c.sent && c.deadline.IsZero() }

// ID is the call's id while it is open on the wire.
func (c *OutCall) ID() uint32 { return c.id }

// Request is what a handler receives.
type Request struct {
	Service, Method string
	// Payload is the request message; the handler may keep it.
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
}

// ID is the peer's id of the call.
func (c *InCall) ID() uint32 { return c.id }

type fragment struct {
	out  *OutCall
	in   *InCall
	id   uint32
	data []byte
	pos  int
	end  Flags // RESPONSE: END on the last fragment
}

type outSeg struct {
	off, end int
	big      []byte
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
func (s *Session) Closed() bool { return s.phase == phaseClosed }

// Draining reports whether GOAWAY was sent or received: no new calls.
func (s *Session) Draining() bool { return s.phase != phaseOpen || s.goawayReceived }

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

// ---- output --------------------------------------------------------------

// Pending is the number of output bytes not yet taken.
func (s *Session) Pending() int { return len(s.obuf) + s.bigBytes }

// HasOutput reports whether TakeOutput has something to give.
func (s *Session) HasOutput() bool { return len(s.obuf) > 0 || len(s.segs) > 0 || len(s.frags) > 0 }

func (s *Session) congested() bool {
	return len(s.obuf)+s.bigBytes+s.backlog > s.opt.MaxWriteBufferBytes
}

// Congested reports whether unsent output is over MaxWriteBufferBytes (§15).
func (s *Session) Congested() bool { return s.congested() }

// Overloaded reports whether the peer keeps sending work beyond its allowance while we
// are congested: the transport may stop reading from it until output drains.
func (s *Session) Overloaded() bool {
	return s.congested() && (len(s.held) >= s.opt.MaxInflight || s.strikes >= 1024)
}

// SetBacklog tells the session how many bytes the transport took and has not written
// yet. Held work resumes once output is no longer congested.
func (s *Session) SetBacklog(n int) {
	s.backlog = n
	if !s.congested() {
		s.relieve()
	}
}

// TakeOutput appends the frames to write, in order, to bufs (which the caller writes as
// one vectored write) and returns them with the arena that holds the small frames. Give
// the arena back with Recycle once written. At most a budget of large-message fragments
// is written per call; HasOutput says whether more is waiting.
func (s *Session) TakeOutput(bufs [][]byte) ([][]byte, []byte) {
	if len(s.frags) > 0 {
		s.writeFragments()
	}
	s.cut()
	for _, g := range s.segs {
		if g.big != nil {
			bufs = append(bufs, g.big)
		} else {
			bufs = append(bufs, s.obuf[g.off:g.end])
		}
	}
	arena := s.obuf
	s.obuf = s.spare[:0]
	s.spare = nil
	clear(s.segs)
	s.segs = s.segs[:0]
	s.segStart = 0
	s.bigBytes = 0
	if !s.congested() && (len(s.held) > 0 || len(s.waiters) > 0 || s.queueHead < len(s.queue)) {
		s.relieve()
	}
	return bufs, arena
}

// Recycle gives back an arena returned by TakeOutput once its bytes are written.
func (s *Session) Recycle(arena []byte) {
	if s.spare == nil && cap(arena) <= 1<<20 {
		s.spare = arena[:0]
	}
}

func (s *Session) cut() {
	if len(s.obuf) > s.segStart {
		s.segs = append(s.segs, outSeg{off: s.segStart, end: len(s.obuf)})
		s.segStart = len(s.obuf)
	}
}

// appendPayload adds a payload after a header just written: copied when small, else
// referenced.
func (s *Session) appendPayload(p []byte) {
	if len(p) < bigPayload {
		s.obuf = append(s.obuf, p...)
		return
	}
	s.cut()
	s.segs = append(s.segs, outSeg{big: p})
	s.bigBytes += len(p)
}

// writeFragments writes one fragment per message, round robin, until the budget is spent.
func (s *Session) writeFragments() {
	budget := fragmentBudget
	room := s.peerMaxFrame - WordBytes - MaxVarintBytes
	for budget > 0 && len(s.frags) > 0 {
		f := s.frags[0]
		copy(s.frags, s.frags[1:])
		s.frags[len(s.frags)-1] = nil
		s.frags = s.frags[:len(s.frags)-1]
		n := len(f.data) - f.pos
		if n > room {
			n = room
		}
		last := f.pos+n == len(f.data)
		part := f.data[f.pos : f.pos+n]
		var fl Flags = FlagFollows
		if last {
			fl = f.end
		}
		if f.out != nil {
			s.obuf = AppendHeader(s.obuf, TypeData, fl, f.id, n)
		} else {
			s.obuf = AppendHeader(s.obuf, TypeResponse, fl, f.id, n)
		}
		s.appendPayload(part)
		f.pos += n
		budget -= n
		if !last {
			s.frags = append(s.frags, f)
			continue
		}
		if f.out != nil {
			f.out.frag = nil
			f.out.payload = nil
			continue
		}
		in := f.in
		in.frag = nil
		if f.end&FlagEnd != 0 {
			s.endIn(in)
		} else if in.finishOK {
			s.finishIn(in, CodeOK, "")
		} else {
			s.afterFragment(in)
		}
	}
}

func (s *Session) dropFrag(f *fragment) {
	for i, g := range s.frags {
		if g == f {
			copy(s.frags[i:], s.frags[i+1:])
			s.frags[len(s.frags)-1] = nil
			s.frags = s.frags[:len(s.frags)-1]
			return
		}
	}
}

// ---- ids -----------------------------------------------------------------

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

// ---- calls we make -------------------------------------------------------

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
	if s.phase == phaseClosed && s.closeErr != nil {
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
	if !c.sent || s.phase == phaseClosed || c.id >= uint32(len(s.out)) || s.out[c.id] != c {
		return
	}
	if c.frag != nil {
		s.dropFrag(c.frag)
		c.frag = nil
	}
	s.obuf = AppendCancel(s.obuf, c.id)
}

// Consumed tells the session the user took n messages of stream call c: credit is granted
// back once half the window is consumed (§8.6).
func (s *Session) Consumed(c *OutCall, n int) {
	if c.settled || !c.sent || s.out[c.id] != c {
		return
	}
	c.unacked += int64(n)
	if c.unacked*2 >= c.window {
		s.grant(c, c.unacked)
		c.unacked = 0
	}
}

func (s *Session) grant(c *OutCall, n int64) {
	if n <= 0 || c.credit+n > MaxCredit {
		return
	}
	c.credit += n
	s.obuf = AppendCredit(s.obuf, c.id, uint32(n))
}

// Starved tells the session the consumer of stream call c found no message waiting: an
// adaptive window (no explicit credit) quadruples, up to MaxStreamWindowBytes of messages
// of the average size seen.
func (s *Session) Starved(c *OutCall) {
	if !c.adaptive || c.settled || !c.sent || s.out[c.id] != c || c.itemsIn == 0 {
		return
	}
	avg := c.bytesIn / c.itemsIn
	if avg < 1 {
		avg = 1
	}
	limit := int64(s.opt.MaxStreamWindowBytes) / avg
	if limit > 65536 {
		limit = 65536
	}
	next := c.window * 4
	if next > limit {
		next = limit
	}
	if next <= c.window {
		return
	}
	g := next - c.window + c.unacked
	c.window = next
	c.unacked = 0
	s.grant(c, g)
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
	for s.queueHead < len(s.queue) && s.outActive < s.peerMaxInfl && !s.congested() && s.phase == phaseOpen {
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

// ---- reassembly (one reassembler for requests and responses, §8.7, §8.8) -------------

func (s *Session) reasmAdd(buf *[]byte, frag []byte) bool {
	if len(*buf)+len(frag) > s.opt.MaxMessageBytes || s.reasmBytes+len(frag) > s.opt.MaxReassemblyBytes {
		return false
	}
	if *buf == nil {
		*buf = make([]byte, 0, max(len(frag)*2, 64))
	}
	*buf = append(*buf, frag...)
	s.reasmBytes += len(frag)
	return true
}

func (s *Session) reasmTake(buf *[]byte) []byte {
	b := *buf
	s.reasmBytes -= len(b)
	*buf = nil
	if b == nil {
		b = []byte{}
	}
	return b
}

func (s *Session) reasmDrop(buf *[]byte) {
	s.reasmBytes -= len(*buf)
	*buf = nil
}

// ---- input ---------------------------------------------------------------

// Receive processes a batch of decoded frames; cerr is the decoder's error after them,
// if any. A codec error or a session violation sends ERROR and closes (§10.2).
func (s *Session) Receive(frames []Frame, cerr error, now time.Time) {
	s.setClock(now)
	for i := range frames {
		if s.phase == phaseClosed {
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
	if cerr != nil && s.phase != phaseClosed {
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
	if s.phase == phaseClosed {
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

func (s *Session) onRequest(f *Frame, now time.Time) {
	s.recvSeq++
	id := f.ID
	if s.inc.get(id) != nil {
		s.violate(ViolationIDInUse+": REQUEST reuses id "+strconv.FormatUint(uint64(id), 10)+" of a call still in progress", nil)
		return
	}
	if s.goawaySent {
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
	in := &InCall{id: id, seq: s.recvSeq, credit: credit}
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
	in.Req.Payload = s.keep(f)
	s.dispatch(in)
}

const introService = "$pipit"

func (s *Session) lookup(service, method []byte) (Route, Code) {
	if string(service) == introService {
		if !s.intro {
			return Route{}, CodeUnknownService
		}
		if string(method) == "methods" {
			return Route{Service: introService, Method: "methods", Kind: KindUnary}, CodeOK
		}
		return Route{}, CodeUnknownMethod
	}
	if s.router == nil {
		return Route{}, CodeUnknownService
	}
	return s.router.Route(service, method)
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
			s.emit(Event{Kind: EventCallMessage, Out: c, Payload: msg, Text: c.text})
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

func (s *Session) onGoaway(f *Frame, now time.Time) {
	if s.goawayReceived {
		s.violate(ViolationSecondGoaway+": a second GOAWAY", nil)
		return
	}
	d := s.sentSeq - f.ID
	if d >= 1<<31 {
		s.violate(ViolationBadGoaway+": GOAWAY "+strconv.FormatUint(uint64(f.ID), 10)+" counts more requests than the "+
			strconv.FormatUint(uint64(s.sentSeq), 10)+" sent", nil)
		return
	}
	// The last d requests sent were discarded: each must still be open here (§9.3).
	open := uint32(0)
	for _, c := range s.out {
		if c != nil && s.sentSeq-c.seq < d {
			open++
		}
	}
	if open != d {
		s.violate(ViolationBadGoaway+": GOAWAY "+strconv.FormatUint(uint64(f.ID), 10)+" discards "+
			strconv.FormatUint(uint64(d), 10)+" requests, of which only "+strconv.FormatUint(uint64(open), 10)+" are open", nil)
		return
	}
	s.goawayReceived = true
	msg := "the peer is going away; the call was not processed"
	if len(f.Body) > 0 {
		msg = "the peer is going away (" + string(f.Body) + "); the call was not processed"
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
	s.GoAway(CodeOK, "", now)
}

// ---- serving -------------------------------------------------------------

// Respond ends the peer's call in with a handler's result: payload (TEXT when text), or
// err. For a stream call the result is one message folded with END (§8.10). payload is
// not copied when large: do not modify it afterwards.
func (s *Session) Respond(in *InCall, payload []byte, text bool, err error) {
	if in.settled || s.phase == phaseClosed {
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
	if in.settled || s.phase == phaseClosed {
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
	if in.settled || s.phase == phaseClosed {
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
	if s.phase == phaseClosed {
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
	s.maybeFinish()
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

// ---- time ----------------------------------------------------------------

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

// ---- lifecycle -----------------------------------------------------------

// Ping sends a PING; its EventPong follows.
func (s *Session) Ping(now time.Time) uint32 {
	s.pingID++
	if s.phase == phaseClosed {
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
	if s.phase == phaseClosed {
		return
	}
	if !s.goawaySent {
		s.goawaySent = true
		s.phase = phaseDraining
		s.obuf = AppendGoaway(s.obuf, s.recvSeq, uint32(code), cutMessage(msg))
		s.failQueued(&Error{Code: CodeUnavailable, Message: "the connection is closing; the call was not sent"})
		// Requests held for output congestion were received before the GOAWAY: they run.
	}
	s.maybeFinish()
}

func (s *Session) maybeFinish() {
	if s.phase != phaseDraining || !s.goawayReceived || s.outActive > 0 || s.inc.n > 0 || len(s.frags) > 0 {
		return
	}
	s.finished = true
	s.close(nil)
}

// Finished reports whether the connection finished cleanly (§9.4).
func (s *Session) Finished() bool { return s.finished }

// End tells the session the byte stream ended or failed (cause: the decoder's End error,
// an I/O error, or nil for a clean EOF). Unless the connection had finished, every open
// call fails with CONNECTION_CLOSED (§10.3).
func (s *Session) End(cause error) {
	if s.phase == phaseClosed {
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

// close ends the session: err nil is a clean close. Every call still open fails.
func (s *Session) close(err *Error) {
	if s.phase == phaseClosed {
		return
	}
	s.phase = phaseClosed
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

// relieve resumes held work while output is not congested.
func (s *Session) relieve() {
	s.strikes = 0
	for len(s.held) > 0 && !s.congested() && s.phase != phaseClosed {
		in := s.held[0]
		copy(s.held, s.held[1:])
		s.held[len(s.held)-1] = nil
		s.held = s.held[:len(s.held)-1]
		s.run(in)
	}
	if len(s.waiters) > 0 && !s.congested() && s.Pending() < producerBatch {
		w := s.waiters
		s.waiters = nil
		for _, in := range w {
			s.wake(in)
		}
	}
	// Queued calls go out with the time left as of the last time the session was given.
	if s.queueHead < len(s.queue) {
		s.pump(s.clock)
	}
}

func (s *Session) setClock(now time.Time) {
	if now.After(s.clock) {
		s.clock = now
	}
}

// slabSize: small payloads handed out are copied into a shared slab of this size, so that
// a batch of small messages costs one allocation, not one each.
const (
	slabSize    = 16 << 10
	slabPayload = 512
)

// keep returns a frame's body for the user to keep: itself when the decoder handed it
// over (Frame.Owned), else a copy.
func (s *Session) keep(f *Frame) []byte {
	if f.Owned && len(f.Body) > 0 {
		return f.Body[:len(f.Body):len(f.Body)]
	}
	return s.clone(f.Body)
}

// clone copies a payload the session hands out (the decoder's buffer is reused).
func (s *Session) clone(b []byte) []byte {
	if len(b) == 0 {
		return []byte{}
	}
	if len(b) <= slabPayload {
		if cap(s.slab)-len(s.slab) < len(b) {
			s.slab = make([]byte, 0, slabSize)
		}
		n := len(s.slab)
		s.slab = append(s.slab, b...)
		return s.slab[n : n+len(b) : n+len(b)]
	}
	c := make([]byte, len(b))
	copy(c, b)
	return c
}

// ---- deadlines: a binary min-heap with lazy deletion ------------------------

type timer struct {
	at  time.Time
	out *OutCall
	in  *InCall
}

type timerHeap []timer

func (h *timerHeap) push(t timer) {
	*h = append(*h, t)
	a := *h
	for i := len(a) - 1; i > 0; {
		p := (i - 1) / 2
		if !a[i].at.Before(a[p].at) {
			break
		}
		a[i], a[p] = a[p], a[i]
		i = p
	}
}

func (h *timerHeap) pop() timer {
	a := *h
	top := a[0]
	n := len(a) - 1
	a[0] = a[n]
	a[n] = timer{}
	a = a[:n]
	for i := 0; ; {
		c := 2*i + 1
		if c >= n {
			break
		}
		if c+1 < n && a[c+1].at.Before(a[c].at) {
			c++
		}
		if !a[c].at.Before(a[i].at) {
			break
		}
		a[i], a[c] = a[c], a[i]
		i = c
	}
	*h = a
	return top
}

// inTable holds the peer's calls by id: a slice for the small ids peers use (smallest free
// first), a map beyond.
type inTable struct {
	small []*InCall
	big   map[uint32]*InCall
	n     int
}

const inTableSmall = 4096

func (t *inTable) get(id uint32) *InCall {
	if id < uint32(len(t.small)) {
		return t.small[id]
	}
	if id < inTableSmall {
		return nil
	}
	return t.big[id]
}

func (t *inTable) put(id uint32, in *InCall) {
	t.n++
	if id < inTableSmall {
		for int(id) >= len(t.small) {
			t.small = append(t.small, nil)
		}
		t.small[id] = in
		return
	}
	if t.big == nil {
		t.big = make(map[uint32]*InCall)
	}
	t.big[id] = in
}

func (t *inTable) del(id uint32) {
	if id < inTableSmall {
		if id < uint32(len(t.small)) && t.small[id] != nil {
			t.small[id] = nil
			t.n--
		}
		return
	}
	if _, ok := t.big[id]; ok {
		delete(t.big, id)
		t.n--
	}
}

// all iterates over the calls held (deleting the current one is allowed).
func (t *inTable) all() func(yield func(uint32, *InCall) bool) {
	return func(yield func(uint32, *InCall) bool) {
		for id, in := range t.small {
			if in != nil && !yield(uint32(id), in) {
				return
			}
		}
		for id, in := range t.big {
			if !yield(id, in) {
				return
			}
		}
	}
}
