package pipit

import (
	"context"
	"sort"
	"sync"
)

// UnaryHandler serves a method that produces one result. It returns the response message
// (which the connection may write from where it is: do not modify it afterwards) or an
// error. An *Error's code is sent if a handler may send it (§13.2), else APPLICATION_ERROR;
// any other error is APPLICATION_ERROR with its text. ctx ends when the caller cancels,
// the deadline passes, the connection closes or the handler returns.
//
// req and its Payload are the handler's to keep. On a connection made with
// Options.ReuseRequestMemory they are valid only until the handler returns, like the body
// of a net/http request, and so is ctx: copy what you keep, and give a goroutine that
// outlives the handler a context of its own (context.WithoutCancel(ctx) keeps the values).
type UnaryHandler func(ctx context.Context, req *Request) ([]byte, error)

// StreamHandler serves a method that produces a stream: it sends messages with w and
// returns nil to end the call with OK, or an error for its status. w is valid until the
// handler returns; req and its Payload are as for a UnaryHandler.
type StreamHandler func(ctx context.Context, req *Request, w *StreamWriter) error

// Mux routes calls to handlers by service and method. It is safe for concurrent use, and
// one Mux may serve many connections.
type Mux struct {
	mu       sync.RWMutex
	services map[string]map[string]*Route
}

// NewMux returns an empty Mux.
func NewMux() *Mux { return &Mux{services: make(map[string]map[string]*Route)} }

// HandleUnary registers h for service/method. It panics on the reserved service "$pipit"
// and on names longer than 255 bytes.
func (m *Mux) HandleUnary(service, method string, h UnaryHandler) {
	m.add(service, method, KindUnary, h)
}

// HandleStream registers h for service/method.
func (m *Mux) HandleStream(service, method string, h StreamHandler) {
	m.add(service, method, KindStream, h)
}

func (m *Mux) add(service, method string, kind MethodKind, h any) {
	if service == introService {
		panic("pipit: the service name $pipit is reserved")
	}
	if len(service) > MaxNameBytes || len(method) > MaxNameBytes {
		panic("pipit: service and method names are limited to 255 bytes")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.services == nil {
		m.services = make(map[string]map[string]*Route)
	}
	ms := m.services[service]
	if ms == nil {
		ms = make(map[string]*Route)
		m.services[service] = ms
	}
	ms[method] = &Route{Service: service, Method: method, Kind: kind, Handler: h}
}

// Route implements Router.
func (m *Mux) Route(service, method []byte) (Route, Code) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ms, ok := m.services[string(service)]
	if !ok {
		return Route{}, CodeUnknownService
	}
	r, ok := ms[string(method)]
	if !ok {
		return Route{}, CodeUnknownMethod
	}
	return *r, CodeOK
}

// AppendMethods implements Router: the §8.11 introspection answer.
func (m *Mux) AppendMethods(b []byte) []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	svcs := make([]string, 0, len(m.services))
	for s := range m.services {
		svcs = append(svcs, s)
	}
	sort.Strings(svcs)
	for _, s := range svcs {
		ms := make([]string, 0, len(m.services[s]))
		for name := range m.services[s] {
			ms = append(ms, name)
		}
		sort.Strings(ms)
		for _, name := range ms {
			b = append(b, byte(len(s)))
			b = append(b, s...)
			b = append(b, byte(len(name)))
			b = append(b, name...)
			b = append(b, byte(m.services[s][name].Kind))
		}
	}
	return b
}
