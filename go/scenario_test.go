package pipit

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// The scenario runner drives one Session (the subject) in memory from the data in
// spec/scenarios/*.json (format: spec/scenarios/README.md). Scenarios of this module's
// own are in testdata/scenarios and run the same way.

type failSpec struct {
	Code    uint32 `json:"code"`
	Message string `json:"message"`
}

type behaviour struct {
	Kind      string    `json:"kind"`
	Reply     *string   `json:"reply"`
	ReplyText *string   `json:"replyText"`
	Empty     bool      `json:"empty"`
	Fail      *failSpec `json:"fail"`
	Throw     *string   `json:"throw"`
	Items     []string  `json:"items"`
	ItemsText []string  `json:"itemsText"`
	Then      *struct {
		Fail  *failSpec `json:"fail"`
		Throw *string   `json:"throw"`
	} `json:"then"`
	Hold bool `json:"hold"`
	// release steps only
	Handler string `json:"handler"`
	End     bool   `json:"end"`
}

type scenario struct {
	Name     string                          `json:"name"`
	Section  string                          `json:"section"`
	Checks   string                          `json:"checks"`
	Options  map[string]any                  `json:"options"`
	Services map[string]map[string]behaviour `json:"services"`
	Steps    []map[string]json.RawMessage    `json:"steps"`
}

type scnRouter struct {
	routes map[string]map[string]*Route
}

func (r *scnRouter) Route(service, method []byte) (Route, Code) {
	m, ok := r.routes[string(service)]
	if !ok {
		return Route{}, CodeUnknownService
	}
	rt, ok := m[string(method)]
	if !ok {
		return Route{}, CodeUnknownMethod
	}
	return *rt, CodeOK
}

func (r *scnRouter) AppendMethods(b []byte) []byte {
	var svcs []string
	for s := range r.routes {
		svcs = append(svcs, s)
	}
	sort.Strings(svcs)
	for _, s := range svcs {
		var ms []string
		for m := range r.routes[s] {
			ms = append(ms, m)
		}
		sort.Strings(ms)
		for _, m := range ms {
			b = append(b, byte(len(s)))
			b = append(b, s...)
			b = append(b, byte(len(m)))
			b = append(b, m...)
			b = append(b, byte(r.routes[s][m].Kind))
		}
	}
	return b
}

type scnCall struct {
	out      *OutCall
	stream   bool
	messages [][]byte
	consumed int
	done     bool
	result   []byte
	err      *Error
}

type scnProducer struct {
	items [][]byte
	text  bool
	end   bool
	fail  *failSpec
	throw *string
}

type scnHandler struct {
	name     string
	b        behaviour
	calls    int
	last     Request
	lastIn   *InCall
	lastDL   int64 // ms the last invocation had from its start; -1: no deadline
	aborted  *Error
	held     []*InCall
	producer map[*InCall]*scnProducer
}

type runner struct {
	t        *testing.T
	s        *Session
	dec      *Decoder
	out      *Decoder
	clock    time.Time
	calls    map[string]*scnCall
	byOut    map[*OutCall]*scnCall
	handlers map[string]*scnHandler
	sent     []vFrame
	closed   bool
	closeErr *Error
	events   []Event
	peerMax  int    // the peer's frame limit as the scenario announced it
	pending  []byte // written bytes not yet a whole frame
	early    map[string][]behaviour
}

// checkSizes checks that no frame written is larger than the peer's limit.
func (r *runner) checkSizes(bufs [][]byte) {
	for _, b := range bufs {
		r.pending = append(r.pending, b...)
	}
	for len(r.pending) >= WordBytes {
		size := WordBytes + (int(r.pending[0]) | int(r.pending[1])<<8 | int(r.pending[2])<<16)
		if size > r.peerMax {
			r.t.Fatalf("the subject wrote a frame of %d bytes; the peer's limit is %d", size, r.peerMax)
		}
		if len(r.pending) < size {
			return
		}
		r.pending = r.pending[size:]
	}
}

func errName(e *Error) string {
	switch {
	case e.wire && e.Code >= CodeConnectionClosed && e.Code < CodeApplicationMin:
		return "UNKNOWN"
	case e.Code >= CodeApplicationMin:
		return "APPLICATION_ERROR"
	case e.Code > CodeConnectionClosed:
		return "UNKNOWN"
	}
	return e.Code.String()
}

func decodeHexOrText(t *testing.T, h *string, text *string) ([]byte, bool) {
	if text != nil {
		return []byte(*text), true
	}
	if h == nil {
		return nil, false
	}
	b, err := hex.DecodeString(*h)
	if err != nil {
		t.Fatalf("bad hex %q", *h)
	}
	return b, false
}

func (r *runner) fail(step int, format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf("step %d: %s", step+1, fmt.Sprintf(format, args...))
}

func runScenario(t *testing.T, sc scenario) {
	opt := Options{MaxFrameBytes: 65536, NoHello: true, NoIntrospection: true}
	for k, v := range sc.Options {
		switch k {
		case "hello":
			opt.NoHello = !v.(bool)
		case "introspection":
			opt.NoIntrospection = !v.(bool)
		case "maxFrameBytes":
			opt.MaxFrameBytes = int(v.(float64))
		case "maxMessageBytes":
			opt.MaxMessageBytes = int(v.(float64))
			if opt.MaxMessageBytes == 0 {
				opt.MaxMessageBytes = -1 // 0: only empty messages
			}
		case "maxInflight":
			opt.MaxInflight = int(v.(float64))
		case "maxQueuedCalls":
			opt.MaxQueuedCalls = int(v.(float64))
		case "maxReassemblyBytes":
			opt.MaxReassemblyBytes = int(v.(float64))
		default:
			t.Fatalf("unknown option %s", k)
		}
	}
	router := &scnRouter{routes: map[string]map[string]*Route{}}
	r := &runner{t: t, clock: time.Unix(1000, 0), peerMax: DefaultMaxFrameBytes, early: map[string][]behaviour{}, calls: map[string]*scnCall{}, byOut: map[*OutCall]*scnCall{},
		handlers: map[string]*scnHandler{}}
	for svc, methods := range sc.Services {
		router.routes[svc] = map[string]*Route{}
		for m, b := range methods {
			h := &scnHandler{name: svc + "/" + m, b: b, producer: map[*InCall]*scnProducer{}}
			r.handlers[h.name] = h
			kind := KindUnary
			if b.Kind == "stream" {
				kind = KindStream
			}
			router.routes[svc][m] = &Route{Service: svc, Method: m, Kind: kind, Handler: h}
		}
	}
	r.s = NewSession(opt, router)
	r.s.inline = r.request
	r.dec = NewDecoder(r.s.opt.MaxFrameBytes)
	r.out = NewDecoder(MaxFrameBytesLimit)
	r.settle()
	for i, step := range sc.Steps {
		if len(step) != 1 {
			r.fail(i, "a step has one key")
		}
		for k, raw := range step {
			r.step(i, k, raw)
		}
	}
}

func (r *runner) step(i int, k string, raw json.RawMessage) {
	t := r.t
	t.Helper()
	un := func(v any) {
		if err := strictUnmarshal(raw, v); err != nil {
			r.fail(i, "%s: %v", k, err)
		}
	}
	switch k {
	case "call":
		var c struct {
			ID          string      `json:"id"`
			Service     string      `json:"service"`
			Method      string      `json:"method"`
			Payload     *string     `json:"payload"`
			PayloadText *string     `json:"payloadText"`
			Stream      bool        `json:"stream"`
			Credit      int         `json:"credit"`
			TimeoutMs   *float64    `json:"timeoutMs"`
			Metadata    [][2]string `json:"metadata"`
		}
		un(&c)
		p, text := decodeHexOrText(t, c.Payload, c.PayloadText)
		if p == nil {
			p = []byte{}
		}
		o := CallOptions{Stream: c.Stream, Text: text, Credit: c.Credit}
		if c.TimeoutMs != nil {
			o.Deadline = r.clock.Add(time.Duration(*c.TimeoutMs * float64(time.Millisecond)))
		}
		for _, kv := range c.Metadata {
			o.Metadata = append(o.Metadata, MetadataEntry{kv[0], kv[1]})
		}
		sc := &scnCall{out: &OutCall{}, stream: c.Stream}
		r.calls[c.ID] = sc
		r.byOut[sc.out] = sc
		r.s.Call(sc.out, c.Service, c.Method, p, o, r.clock)
	case "cancel":
		var id string
		un(&id)
		r.s.Cancel(r.call(i, id).out, &Error{Code: CodeCancelled, Message: "cancelled by the user"})
	case "consume":
		var c struct {
			Call  string `json:"call"`
			Count int    `json:"count"`
		}
		un(&c)
		sc := r.call(i, c.Call)
		if sc.consumed+c.Count > len(sc.messages) {
			r.fail(i, "consume %d of %s: only %d of %d messages there", c.Count, c.Call, len(sc.messages)-sc.consumed, len(sc.messages))
		}
		for k := 0; k < c.Count; k++ {
			sc.consumed++
			r.s.Consumed(sc.out, 1)
		}
	case "goaway":
		r.s.GoAway(CodeOK, "", r.clock)
	case "release":
		var b behaviour
		un(&b)
		h := r.handlers[b.Handler]
		if h == nil {
			r.fail(i, "release: no handler %s", b.Handler)
		}
		if len(h.held) == 0 {
			if h.b.Kind != "stream" {
				r.fail(i, "release: no invocation of %s waiting", b.Handler)
			}
			r.early[b.Handler] = append(r.early[b.Handler], b)
			break
		}
		r.release(h, b)
	case "advance":
		var ms float64
		un(&ms)
		r.clock = r.clock.Add(time.Duration(ms * float64(time.Millisecond)))
		r.s.Tick(r.clock)
	case "end":
		var e struct {
			Incomplete bool `json:"incomplete"`
		}
		un(&e)
		err := r.dec.End()
		var ce *CodecError
		partial := errors.As(err, &ce) && ce.Code == ErrIncomplete
		if partial != e.Incomplete {
			r.fail(i, "end: incomplete=%v but the decoder says %v", e.Incomplete, err)
		}
		r.s.End(err)
	case "receive":
		var fs []vFrame
		un(&fs)
		var b []byte
		for _, f := range fs {
			b = fromV(t, b, f)
			if f.Type == "HELLO" {
				for _, kv := range f.Settings {
					if kv[0] == SettingMaxFrameBytes {
						r.peerMax = int(clampSetting(kv[0], kv[1]))
					}
				}
			}
		}
		r.feed(b)
	case "receiveHex":
		var h string
		un(&h)
		b, err := hex.DecodeString(h)
		if err != nil {
			r.fail(i, "bad hex")
		}
		r.feed(b)
	case "expectSent":
		var fs []vFrame
		un(&fs)
		r.settle()
		got := r.sent
		r.sent = nil
		if msg := matchSent(t, got, fs); msg != "" {
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(fs)
			r.fail(i, "%s\n got %s\nwant %s", msg, g, w)
		}
	case "expectOutcome":
		var e struct {
			Call          string           `json:"call"`
			Pending       bool             `json:"pending"`
			OK            *json.RawMessage `json:"ok"`
			OKText        *string          `json:"okText"`
			Error         *string          `json:"error"`
			Status        *uint32          `json:"status"`
			MessagePrefix *string          `json:"messagePrefix"`
			Messages      []string         `json:"messages"`
			MessagesText  []string         `json:"messagesText"`
		}
		un(&e)
		r.settle()
		sc := r.call(i, e.Call)
		if e.Messages != nil || e.MessagesText != nil {
			var want [][]byte
			for _, m := range e.Messages {
				b, _ := hex.DecodeString(m)
				want = append(want, b)
			}
			for _, m := range e.MessagesText {
				want = append(want, []byte(m))
			}
			got := sc.messages
			if len(got) == 0 && len(want) == 0 {
				got = want
			}
			if !reflect.DeepEqual(got, want) {
				r.fail(i, "%s messages %q, want %q", e.Call, got, want)
			}
		}
		if e.Status != nil && e.Error == nil {
			if !sc.done || sc.err == nil || uint32(sc.err.Code) != *e.Status {
				r.fail(i, "%s: done=%v err=%v, want status %d", e.Call, sc.done, sc.err, *e.Status)
			}
		}
		switch {
		case e.Pending:
			if sc.done {
				r.fail(i, "%s settled (%v), want pending", e.Call, sc.err)
			}
		case e.Error != nil:
			if !sc.done || sc.err == nil {
				r.fail(i, "%s: done=%v err=%v, want %s", e.Call, sc.done, sc.err, *e.Error)
			}
			if errName(sc.err) != *e.Error {
				r.fail(i, "%s failed with %s (%v), want %s", e.Call, errName(sc.err), sc.err, *e.Error)
			}
			if e.Status != nil && uint32(sc.err.Code) != *e.Status {
				r.fail(i, "%s status %d, want %d", e.Call, sc.err.Code, *e.Status)
			}
			if e.MessagePrefix != nil && !strings.HasPrefix(sc.err.Message, *e.MessagePrefix) {
				r.fail(i, "%s message %q, want prefix %q", e.Call, sc.err.Message, *e.MessagePrefix)
			}
		case e.OK != nil || e.OKText != nil:
			if !sc.done || sc.err != nil {
				r.fail(i, "%s: done=%v err=%v, want ok", e.Call, sc.done, sc.err)
			}
			if e.OKText != nil && string(sc.result) != *e.OKText {
				r.fail(i, "%s result %q, want %q", e.Call, sc.result, *e.OKText)
			}
			if e.OK != nil && !sc.stream {
				var h string
				if json.Unmarshal(*e.OK, &h) == nil {
					b, _ := hex.DecodeString(h)
					if !bytes.Equal(sc.result, b) {
						r.fail(i, "%s result %x, want %x", e.Call, sc.result, b)
					}
				}
			}
		}
	case "expectHandler":
		var e map[string]json.RawMessage
		un(&e)
		r.settle()
		var name string
		json.Unmarshal(e["handler"], &name)
		h := r.handlers[name]
		if h == nil {
			r.fail(i, "no handler %s", name)
		}
		for key, v := range e {
			switch key {
			case "handler":
			case "calls":
				var n int
				json.Unmarshal(v, &n)
				if h.calls != n {
					r.fail(i, "%s called %d times, want %d", name, h.calls, n)
				}
			case "payload", "payloadText":
				var s string
				json.Unmarshal(v, &s)
				want := []byte(s)
				if key == "payload" {
					want, _ = hex.DecodeString(s)
				}
				if !bytes.Equal(h.last.Payload, want) {
					r.fail(i, "%s payload %x, want %x", name, h.last.Payload, want)
				}
			case "text":
				var b bool
				json.Unmarshal(v, &b)
				if h.last.Text != b {
					r.fail(i, "%s text %v, want %v", name, h.last.Text, b)
				}
			case "metadata":
				want := map[string]string{}
				var pairs [][2]string
				if json.Unmarshal(v, &pairs) == nil {
					for _, kv := range pairs {
						want[kv[0]] = kv[1]
					}
				} else {
					json.Unmarshal(v, &want)
				}
				got := h.last.Metadata
				if got == nil {
					got = map[string]string{}
				}
				if !reflect.DeepEqual(got, want) {
					r.fail(i, "%s metadata %v, want %v", name, got, want)
				}
			case "deadlineMs":
				var ms *uint32
				json.Unmarshal(v, &ms)
				switch {
				case ms == nil && h.lastDL >= 0:
					r.fail(i, "%s had a deadline %d ms, want none", name, h.lastDL)
				case ms != nil && int64(*ms) != h.lastDL:
					r.fail(i, "%s had %d ms (-1: none), want %d", name, h.lastDL, *ms)
				}
			case "aborted":
				var want *string
				json.Unmarshal(v, &want)
				switch {
				case want == nil && h.aborted != nil:
					r.fail(i, "%s aborted (%v), want not", name, h.aborted)
				case want != nil && (h.aborted == nil || errName(h.aborted) != *want):
					r.fail(i, "%s aborted %v, want %s", name, h.aborted, *want)
				}
			default:
				r.fail(i, "unknown expectHandler field %s", key)
			}
		}
	case "expectTables":
		var e struct{ Outgoing, Incoming int }
		un(&e)
		r.settle()
		if r.s.OutgoingCalls() != e.Outgoing || r.s.IncomingCalls() != e.Incoming {
			r.fail(i, "tables out=%d in=%d, want out=%d in=%d", r.s.OutgoingCalls(), r.s.IncomingCalls(), e.Outgoing, e.Incoming)
		}
	case "expectClosed":
		var e struct {
			Error *string `json:"error"`
		}
		un(&e)
		r.settle()
		if !r.closed {
			r.fail(i, "not closed")
		}
		switch {
		case e.Error == nil && r.closeErr != nil:
			r.fail(i, "closed with %v, want clean", r.closeErr)
		case e.Error != nil && (r.closeErr == nil || errName(r.closeErr) != *e.Error):
			r.fail(i, "closed with %v, want %s", r.closeErr, *e.Error)
		}
	case "expectOpen":
		r.settle()
		if r.closed {
			r.fail(i, "closed (%v)", r.closeErr)
		}
	default:
		r.fail(i, "unknown step %s", k)
	}
	r.settle()
}

func (r *runner) call(i int, id string) *scnCall {
	c := r.calls[id]
	if c == nil {
		r.fail(i, "no call %s", id)
	}
	return c
}

func (r *runner) feed(b []byte) {
	frames, err := r.dec.Write(b)
	r.s.Receive(frames, err, r.clock)
}

func (r *runner) addItems(p *scnProducer, b behaviour) {
	for _, h := range b.Items {
		x, _ := hex.DecodeString(h)
		p.items = append(p.items, x)
	}
	for _, s := range b.ItemsText {
		p.items = append(p.items, []byte(s))
		p.text = true
	}
}

// settle lets ready work finish, handles events, and takes the output.
func (r *runner) settle() {
	for {
		clear(r.events)
		r.events = r.s.PollEvents(r.events)
		for _, e := range r.events {
			r.event(e)
		}
		bufs, arena := r.s.TakeOutput(nil)
		for _, b := range bufs {
			frames, err := r.out.Write(b)
			if err != nil {
				r.t.Fatalf("the subject wrote an undecodable frame: %v", err)
			}
			for k := range frames {
				r.sent = append(r.sent, toV(&frames[k]))
			}
		}
		r.checkSizes(bufs)
		r.s.Recycle(arena)
		if len(r.events) == 0 && !r.s.HasOutput() {
			if len(r.s.events) == 0 {
				return
			}
		}
	}
}

func (r *runner) event(e Event) {
	switch e.Kind {
	case EventCallDone:
		sc := r.byOut[e.Out]
		sc.done, sc.result, sc.err = true, e.Payload, e.Err
	case EventCallMessage:
		sc := r.byOut[e.Out]
		sc.messages = append(sc.messages, e.Payload)
	case EventRequest:
		r.request(e.In)
	case EventAbort:
		h := e.In.route.Handler.(*scnHandler)
		if h.lastIn == e.In {
			h.aborted = e.Err
		}
	case EventWake:
		h := e.In.route.Handler.(*scnHandler)
		if p := h.producer[e.In]; p != nil {
			r.produce(e.In, p)
		}
	case EventClosed:
		r.closed, r.closeErr = true, e.Err
	}
}

// release applies a release step to the earliest unfinished invocation of h.
func (r *runner) release(h *scnHandler, b behaviour) {
	in := h.held[0]
	if h.b.Kind != "stream" {
		h.held = h.held[1:]
		r.unary(in, b)
		return
	}
	p := h.producer[in]
	if p == nil {
		p = &scnProducer{}
		h.producer[in] = p
	}
	r.addItems(p, b)
	if b.End || b.Fail != nil || b.Throw != nil {
		p.end = true
		p.fail = b.Fail
		p.throw = b.Throw
		h.held = h.held[1:]
	}
	r.produce(in, p)
}

// request runs a handler's behaviour, inline, as the session starts it.
func (r *runner) request(in *InCall) {
	h := in.route.Handler.(*scnHandler)
	h.calls++
	h.last = in.Req
	h.lastIn = in
	h.aborted = nil
	h.lastDL = -1
	if !in.Req.Deadline.IsZero() {
		h.lastDL = int64(in.Req.Deadline.Sub(r.clock) / time.Millisecond)
	}
	if h.b.Hold {
		h.held = append(h.held, in)
		if h.b.Kind == "stream" {
			h.producer[in] = &scnProducer{}
			for len(r.early[h.name]) > 0 && len(h.held) > 0 && h.held[len(h.held)-1] == in {
				b := r.early[h.name][0]
				r.early[h.name] = r.early[h.name][1:]
				r.release(h, b)
			}
		}
		return
	}
	if h.b.Kind == "stream" {
		p := &scnProducer{end: true}
		r.addItems(p, h.b)
		if h.b.Then != nil {
			p.fail = h.b.Then.Fail
			p.throw = h.b.Then.Throw
		}
		h.producer[in] = p
		r.produce(in, p)
		return
	}
	r.unary(in, h.b)
}

func (r *runner) unary(in *InCall, b behaviour) {
	switch {
	case b.Fail != nil:
		r.s.Respond(in, nil, false, &Error{Code: Code(b.Fail.Code), Message: b.Fail.Message})
	case b.Throw != nil:
		r.s.Respond(in, nil, false, fmt.Errorf("%s", *b.Throw))
	case b.Empty:
		r.s.Respond(in, []byte{}, false, nil)
	default:
		p, text := decodeHexOrText(r.t, b.Reply, b.ReplyText)
		if p == nil {
			p = []byte{}
		}
		r.s.Respond(in, p, text, nil)
	}
}

func (r *runner) produce(in *InCall, p *scnProducer) {
	for len(p.items) > 0 {
		switch r.s.Send(in, p.items[0], p.text) {
		case SendOK:
			p.items = p.items[1:]
			continue
		case SendWait:
			return
		case SendEnded:
			p.items = nil
			return
		}
	}
	if p.end {
		var err error
		if p.fail != nil {
			err = &Error{Code: Code(p.fail.Code), Message: p.fail.Message}
		}
		if p.throw != nil {
			err = errors.New(*p.throw)
		}
		r.s.Finish(in, err)
	}
}

// frameMatches compares a frame sent with an expected one; "" when it matches.
func frameMatches(t *testing.T, got, want vFrame) string {
	if got.Type != want.Type {
		return "type"
	}
	if !reflect.DeepEqual(got.Flags, want.Flags) && !(len(got.Flags) == 0 && len(want.Flags) == 0) {
		return "flags"
	}
	if got.ID != want.ID {
		return "id"
	}
	if want.Service != nil && (got.Service == nil || *got.Service != *want.Service) {
		return "service"
	}
	if want.Method != nil && (got.Method == nil || *got.Method != *want.Method) {
		return "method"
	}
	if want.Ext != nil && !reflect.DeepEqual(got.Ext, want.Ext) {
		return "ext"
	}
	if want.PayloadText != nil {
		if got.Payload == nil || *got.Payload != hex.EncodeToString([]byte(*want.PayloadText)) {
			return "payload"
		}
	} else if want.Payload != nil && (got.Payload == nil || *got.Payload != *want.Payload) {
		return "payload"
	}
	if want.Code != nil && (got.Code == nil || *got.Code != *want.Code) {
		return "code"
	}
	if want.Message != nil && (got.Message == nil || *got.Message != *want.Message) {
		return "message"
	}
	if want.MessagePrefix != nil && (got.Message == nil || !strings.HasPrefix(*got.Message, *want.MessagePrefix)) {
		return "message prefix"
	}
	if want.Credit != nil && (got.Credit == nil || *got.Credit != *want.Credit) {
		return "credit"
	}
	if want.Type == "HELLO" {
		g := map[[2]uint32]bool{}
		for _, s := range got.Settings {
			g[s] = true
		}
		w := map[[2]uint32]bool{}
		for _, s := range want.Settings {
			w[s] = true
		}
		if !reflect.DeepEqual(g, w) {
			return "settings"
		}
	}
	return ""
}

// expandRepeats replaces every {"repeat": hex, "times": n} with the hex repeated.
func expandRepeats(v any) any {
	switch x := v.(type) {
	case map[string]any:
		if r, ok := x["repeat"].(string); ok && len(x) == 2 {
			if n, ok := x["times"].(float64); ok {
				return strings.Repeat(r, int(n))
			}
		}
		for k, e := range x {
			x[k] = expandRepeats(e)
		}
	case []any:
		for i, e := range x {
			x[i] = expandRepeats(e)
		}
	}
	return v
}

func strictUnmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

func loadScenarios(t *testing.T, pattern string) []scenario {
	files, _ := filepath.Glob(pattern)
	var all []scenario
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var generic any
		if err := json.Unmarshal(b, &generic); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		b, _ = json.Marshal(expandRepeats(generic))
		var file struct {
			Description string     `json:"description"`
			Scenarios   []scenario `json:"scenarios"`
		}
		if err := strictUnmarshal(b, &file); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		all = append(all, file.Scenarios...)
	}
	return all
}

func TestScenarios(t *testing.T) {
	all := loadScenarios(t, filepath.Join(specDir(t), "scenarios", "*.json"))
	if len(all) == 0 {
		t.Skip("no scenarios in spec/scenarios yet")
	}
	seen := map[string]bool{}
	for _, sc := range all {
		if seen[sc.Name] {
			t.Errorf("duplicate scenario name %s", sc.Name)
		}
		seen[sc.Name] = true
		t.Run(sc.Name, func(t *testing.T) { runScenario(t, sc) })
	}
}

func TestLocalScenarios(t *testing.T) {
	all := loadScenarios(t, filepath.Join("testdata", "scenarios", "*.json"))
	if len(all) == 0 {
		t.Fatal("no local scenarios")
	}
	for _, sc := range all {
		t.Run(sc.Name, func(t *testing.T) { runScenario(t, sc) })
	}
}

// matchSent compares the frames written with the expected ones, where an expectation with
// "fragmented": true stands for a message sent in fragments (spec/scenarios/README.md).
func matchSent(t *testing.T, got, want []vFrame) string {
	used := make([]bool, len(got))
	gi := 0
	next := func() int {
		for gi < len(got) && used[gi] {
			gi++
		}
		return gi
	}
	for j, w := range want {
		k := next()
		if k >= len(got) {
			return fmt.Sprintf("sent %d frames, want more (expectation %d)", len(got), j)
		}
		if !w.Fragmented {
			if msg := frameMatches(t, got[k], w); msg != "" {
				return fmt.Sprintf("frame %d: %s", k, msg)
			}
			used[k] = true
			continue
		}
		first := w
		first.Fragmented = false
		fl := flagsOf(w.Flags)
		end := w.Type == "RESPONSE" && fl&FlagEnd != 0
		first.Flags = flagNames(typeOf(w.Type), fl&^FlagEnd|FlagFollows)
		whole := payloadOf(w)
		first.Payload, first.PayloadText = nil, nil
		if msg := frameMatches(t, got[k], first); msg != "" {
			return fmt.Sprintf("frame %d (first fragment): %s", k, msg)
		}
		used[k] = true
		data, _ := hex.DecodeString(*got[k].Payload)
		contType := "DATA"
		if w.Type == "RESPONSE" {
			contType = "RESPONSE"
		}
		done := false
		for m := k + 1; m < len(got) && !done; m++ {
			g := got[m]
			if used[m] || g.Type != contType || g.ID != w.ID {
				continue
			}
			gfl := flagsOf(g.Flags)
			if gfl&FlagText != 0 {
				return fmt.Sprintf("frame %d: TEXT on a continuation", m)
			}
			p, _ := hex.DecodeString(*g.Payload)
			data = append(data, p...)
			used[m] = true
			if gfl&FlagFollows == 0 {
				done = true
				if (gfl&FlagEnd != 0) != end {
					return fmt.Sprintf("frame %d: END on the last fragment is %v, want %v", m, gfl&FlagEnd != 0, end)
				}
			} else if gfl&FlagEnd != 0 {
				return fmt.Sprintf("frame %d: END before the last fragment", m)
			}
		}
		if !done {
			return fmt.Sprintf("the fragments of %s %d do not end", w.Type, w.ID)
		}
		if !bytes.Equal(data, whole) {
			return fmt.Sprintf("the fragments of %s %d carry %d bytes, want %d", w.Type, w.ID, len(data), len(whole))
		}
	}
	if k := next(); k < len(got) {
		return fmt.Sprintf("frame %d was not expected", k)
	}
	return ""
}

func typeOf(name string) FrameType {
	for i, n := range typeNames {
		if n == name {
			return FrameType(i)
		}
	}
	return 0xF
}

func payloadOf(v vFrame) []byte {
	if v.PayloadText != nil {
		return []byte(*v.PayloadText)
	}
	if v.Payload == nil {
		return nil
	}
	b, _ := hex.DecodeString(*v.Payload)
	return b
}
