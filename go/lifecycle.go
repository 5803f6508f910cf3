// The lifecycle of one connection (spec/PROTOCOL.md §9 GOAWAY, §10 ERROR): one explicit
// state, its transitions, and what each state allows, as tables. They are the tables of
// the TypeScript implementation (bindings/lifecycle.ts).
//
//	state            we open calls   we serve new REQUESTs    it ends when
//	---------------  --------------  -----------------------  ------------------------------
//	OPEN             yes             yes                      GOAWAY is sent or received
//	GOAWAY_SENT      no              no: discarded, §9.2      the peer's GOAWAY arrives
//	GOAWAY_RECEIVED  no, §9.3        yes                      ours is sent: at once, §9.3
//	DRAINING         no              no: discarded            no call is left either way, §9.4
//	CLOSED           no: they fail   nothing is read          (final)
//
// In every state but CLOSED, calls already open in either direction run to their end, and
// CREDIT, CANCEL, PING and PONG keep flowing (§9.3).
//
//	OPEN             --SEND_GOAWAY-->  GOAWAY_SENT
//	OPEN             --RECV_GOAWAY-->  GOAWAY_RECEIVED
//	GOAWAY_SENT      --RECV_GOAWAY-->  DRAINING
//	GOAWAY_RECEIVED  --SEND_GOAWAY-->  DRAINING
//	DRAINING         --FINISHED----->  CLOSED   the clean close: nothing can be lost
//	any but CLOSED   --FAIL--------->  CLOSED   ERROR sent or received, transport lost,
//	                                            Abort
//
// An event a state has no row for is refused. RECV_GOAWAY in GOAWAY_RECEIVED or DRAINING is
// the peer's second GOAWAY (E_SECOND_GOAWAY); SEND_GOAWAY there means we already sent ours,
// which GoAway checks before it writes one. GOAWAY_RECEIVED lasts only while the session
// handles the peer's GOAWAY: it answers with its own before reading the next frame.

package pipit

// state is the connection's state in the table above.
type state uint8

const (
	stateNone state = iota // no row: the event is refused
	stateOpen
	stateGoawaySent
	stateGoawayReceived
	stateDraining
	stateClosed
)

// lifeEvent moves the connection from one state to another.
type lifeEvent uint8

const (
	evSendGoaway lifeEvent = iota
	evRecvGoaway
	evFinished
	evFail
)

var transitions = [...][4]state{
	stateOpen:           {evSendGoaway: stateGoawaySent, evRecvGoaway: stateGoawayReceived, evFail: stateClosed},
	stateGoawaySent:     {evRecvGoaway: stateDraining, evFail: stateClosed},
	stateGoawayReceived: {evSendGoaway: stateDraining, evFail: stateClosed},
	stateDraining:       {evFinished: stateClosed, evFail: stateClosed},
	stateClosed:         {},
}

// allows is what a state allows: the columns of the first table above.
type allows struct {
	// openCalls: we may send new REQUESTs (calls opened otherwise fail at once, unsent).
	openCalls bool
	// serveRequests: a new REQUEST from the peer is served; otherwise it is discarded
	// unanswered (§9.2).
	serveRequests bool
	// finishWhenIdle: the connection is finished once no call is left either way (§9.4).
	finishWhenIdle bool
}

var allowed = [...]allows{
	stateOpen:           {openCalls: true, serveRequests: true},
	stateGoawaySent:     {},
	stateGoawayReceived: {serveRequests: true},
	stateDraining:       {finishWhenIdle: true},
	stateClosed:         {},
}

// next is the state ev leads to from st, or stateNone when st has no row for it.
func (st state) next(ev lifeEvent) state { return transitions[st][ev] }

// allows is what st allows.
func (st state) allows() allows { return allowed[st] }
