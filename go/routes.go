// How the session finds a handler: the Router it is given (Mux, mux.go) and the built-in
// introspection method $pipit/methods (§8.11).

package pipit

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
