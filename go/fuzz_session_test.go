package pipit

import (
	"encoding/hex"
	"testing"
	"time"
)

type fuzzRouter struct{}

func (fuzzRouter) Route(service, method []byte) (Route, Code) {
	if string(service) != "s" {
		return Route{}, CodeUnknownService
	}
	switch string(method) {
	case "u":
		return Route{Service: "s", Method: "u", Kind: KindUnary}, CodeOK
	case "st":
		return Route{Service: "s", Method: "st", Kind: KindStream}, CodeOK
	}
	return Route{}, CodeUnknownMethod
}

func (fuzzRouter) AppendMethods(b []byte) []byte { return append(b, 1, 's', 1, 'u', 1) }

// FuzzSession reads the input as a program of user actions and received bytes (well
// formed frames and raw garbage) and drives one session with it. Whatever happens: no
// panic, every frame it writes is valid, every call settles at most once, and all of them
// once it is closed.
func FuzzSession(f *testing.F) {
	f.Add([]byte{0, 1, 5, 0, 2, 5, 1, 6, 10, 3, 1})
	f.Add([]byte{5, 3, 0, 0, 7, 1, 1, 4, 5, 0x01, 0x00, 0x00, 0x0b, 0x00})
	f.Add([]byte{1, 2, 5, 0, 5, 0, 5, 0, 3, 4, 2, 0, 6, 200, 7, 0})
	seed, _ := hex.DecodeString("0e00002101026462057175657279706e6f")
	f.Add(append([]byte{4, byte(len(seed))}, seed...))
	f.Fuzz(func(t *testing.T, prog []byte) {
		s := NewSession(Options{MaxFrameBytes: 65536, MaxInflight: 4, MaxQueuedCalls: 4, MaxMessageBytes: 1 << 16, MaxReassemblyBytes: 1 << 17}, fuzzRouter{})
		dec := NewDecoder(MaxFrameBytesLimit) // reads what the session writes
		in := NewDecoder(65536)               // the session's input
		now := time.Unix(100, 0)
		var calls []*OutCall
		settled := map[*OutCall]int{}
		var held []*InCall
		var events []Event
		next := func() byte {
			if len(prog) == 0 {
				return 0
			}
			b := prog[0]
			prog = prog[1:]
			return b
		}
		check := func() {
			clear(events)
			events = s.PollEvents(events)
			for _, e := range events {
				switch e.Kind {
				case EventCallDone:
					settled[e.Out]++
					if settled[e.Out] > 1 {
						t.Fatalf("call settled twice")
					}
				case EventRequest:
					held = append(held, e.In)
				}
			}
			bufs, arena := s.TakeOutput(nil)
			for _, b := range bufs {
				if _, err := dec.Write(b); err != nil {
					t.Fatalf("the session wrote an invalid frame: %v", err)
				}
			}
			s.Recycle(arena)
			if s.OutgoingCalls() < 0 || s.IncomingCalls() < 0 || s.reasmBytes < 0 {
				t.Fatalf("negative counts: %d %d %d", s.OutgoingCalls(), s.IncomingCalls(), s.reasmBytes)
			}
		}
		for len(prog) > 0 {
			switch next() % 8 {
			case 0, 1:
				c := &OutCall{}
				calls = append(calls, c)
				o := CallOptions{Stream: prog != nil && len(prog) > 0 && prog[0]%2 == 1, Credit: int(next() % 4)}
				if next()%3 == 0 {
					o.Deadline = now.Add(time.Duration(next()) * time.Millisecond)
				}
				s.Call(c, "s", []string{"u", "st", "x"}[next()%3], make([]byte, int(next())*300), o, now)
			case 2:
				if len(calls) > 0 {
					s.Cancel(calls[int(next())%len(calls)], &Error{Code: CodeCancelled})
				}
			case 3:
				if len(calls) > 0 {
					s.Consumed(calls[int(next())%len(calls)], int(next()%8))
				}
			case 4:
				n := int(next())
				if n > len(prog) {
					n = len(prog)
				}
				frames, err := in.Write(prog[:n])
				prog = prog[n:]
				s.Receive(frames, err, now)
			case 5:
				// a well-formed frame about a recent id
				id := uint32(next() % 4)
				var b []byte
				switch next() % 9 {
				case 0:
					b = AppendResponse(b, id, Flags(next()%8)&^(FlagEnd|FlagFollows)|Flags(next()%2), make([]byte, int(next())))
				case 1:
					b = AppendStatus(b, id, uint32(next()%12), "m")
				case 2:
					b = AppendCredit(b, id, uint32(next())+1)
				case 3:
					fl := Flags(next() % 8)
					b = AppendRequest(b, id, fl&^FlagExt, "s", []string{"u", "st", "x"}[next()%3], nil, make([]byte, int(next())))
				case 4:
					b = AppendData(b, id, Flags(next()%2)*FlagFollows, make([]byte, int(next())))
				case 5:
					b = AppendCancel(b, id)
				case 6:
					b = AppendGoaway(b, uint32(next()%4), 0, "")
				case 7:
					b = AppendPing(b, id)
				case 8:
					b = AppendResponse(b, id, FlagFollows, make([]byte, int(next())))
				}
				frames, err := in.Write(b)
				s.Receive(frames, err, now)
			case 6:
				now = now.Add(time.Duration(next()) * time.Millisecond)
				s.Tick(now)
			case 7:
				switch op := next() % 5; {
				case op == 0:
					s.GoAway(CodeOK, "", now)
				case len(held) > 0:
					h := held[int(next())%len(held)]
					switch op {
					case 1:
						s.Respond(h, make([]byte, int(next())*100), false, nil)
					case 2:
						s.Send(h, []byte{1}, false)
					case 3:
						s.Finish(h, nil)
					case 4:
						s.Respond(h, nil, false, &Error{Code: Code(next())})
					}
				}
			}
			check()
		}
		s.End(nil)
		check()
		for _, c := range calls {
			if settled[c] != 1 {
				t.Fatalf("a call settled %d times after the end", settled[c])
			}
		}
	})
}
