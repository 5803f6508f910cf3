package pipit

import (
	"strconv"
	"unicode/utf8"
)

// ErrCode is a codec error code (§14.2).
type ErrCode uint8

// Codec error codes.
const (
	ErrFrameTooLarge ErrCode = 1
	ErrFrameTooShort ErrCode = 2
	ErrUnknownType   ErrCode = 3
	ErrBadFlags      ErrCode = 4
	ErrBadVarint     ErrCode = 5
	ErrTruncated     ErrCode = 6
	ErrNameOverrun   ErrCode = 7
	ErrExtOverrun    ErrCode = 8
	ErrBadExt        ErrCode = 9
	ErrBadBody       ErrCode = 10
	// ErrIncomplete: the byte stream ended inside a frame (reported by Decoder.End). It is
	// not a protocol violation: no ERROR is sent.
	ErrIncomplete ErrCode = 11
)

var errCodeNames = [...]string{
	"E_OK", "E_FRAME_TOO_LARGE", "E_FRAME_TOO_SHORT", "E_UNKNOWN_TYPE", "E_BAD_FLAGS",
	"E_BAD_VARINT", "E_TRUNCATED", "E_NAME_OVERRUN", "E_EXT_OVERRUN", "E_BAD_EXT",
	"E_BAD_BODY", "E_INCOMPLETE",
}

var errCodeDetails = [...]string{
	"", "frame length exceeds maxFrameBytes", "frame length 0 leaves no room for the id",
	"reserved frame type", "reserved flag set", "overlong or out-of-range varint",
	"field runs past the end of the frame", "name runs past the end of the frame",
	"ext block runs past the end of the frame", "malformed ext block", "malformed frame body",
	"the byte stream ended inside a frame",
}

func (c ErrCode) String() string {
	if int(c) < len(errCodeNames) {
		return errCodeNames[c]
	}
	return "E_" + strconv.Itoa(int(c))
}

// CodecError is a codec error at a stream offset (§14.1).
type CodecError struct {
	Code   ErrCode
	Offset int64 // stream offset of the first byte of the bad frame
	Detail string
}

func (e *CodecError) Error() string {
	d := e.Detail
	if d == "" && int(e.Code) < len(errCodeDetails) {
		d = errCodeDetails[e.Code]
	}
	return e.Code.String() + " at offset " + strconv.FormatInt(e.Offset, 10) + ": " + d
}

// Session violations (§14.3): the names an ERROR message starts with.
const (
	ViolationBadHello         = "E_BAD_HELLO"
	ViolationIDInUse          = "E_ID_IN_USE"
	ViolationNoSuchCall       = "E_NO_SUCH_CALL"
	ViolationSecondMessage    = "E_SECOND_MESSAGE"
	ViolationNoCredit         = "E_NO_CREDIT"
	ViolationCreditOverflow   = "E_CREDIT_OVERFLOW"
	ViolationTextContinuation = "E_TEXT_CONTINUATION"
	ViolationDataComplete     = "E_DATA_COMPLETE"
	ViolationOKMidMessage     = "E_OK_MID_MESSAGE"
	ViolationSecondGoaway     = "E_SECOND_GOAWAY"
	ViolationBadGoaway        = "E_BAD_GOAWAY"
)

// Code is a status code (§13).
type Code uint32

// Status codes. CodeConnectionClosed is local only: never sent on the wire.
const (
	CodeOK                Code = 0
	CodeCancelled         Code = 1
	CodeUnknownService    Code = 2
	CodeUnknownMethod     Code = 3
	CodeInvalidArgument   Code = 4
	CodeApplicationError  Code = 5
	CodeDeadlineExceeded  Code = 6
	CodeResourceExhausted Code = 7
	CodeUnavailable       Code = 8
	CodeProtocolError     Code = 9
	CodeInternal          Code = 10
	CodeConnectionClosed  Code = 11
	// CodeApplicationMin is the first application-defined code.
	CodeApplicationMin Code = 256
)

var codeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN_SERVICE", "UNKNOWN_METHOD", "INVALID_ARGUMENT",
	"APPLICATION_ERROR", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "UNAVAILABLE",
	"PROTOCOL_ERROR", "INTERNAL", "CONNECTION_CLOSED",
}

// String gives the §13 name, UNKNOWN(n) for a reserved code, and CODE(n) for an
// application-defined one.
func (c Code) String() string {
	switch {
	case int(c) < len(codeNames):
		return codeNames[c]
	case c < CodeApplicationMin:
		return "UNKNOWN(" + strconv.FormatUint(uint64(c), 10) + ")"
	}
	return "CODE(" + strconv.FormatUint(uint64(c), 10) + ")"
}

// handlerMaySend reports whether a handler may end a call with c (spec/constants.json
// handlerMaySend); other codes go out as APPLICATION_ERROR.
func handlerMaySend(c Code) bool {
	switch c {
	case CodeCancelled, CodeInvalidArgument, CodeApplicationError, CodeDeadlineExceeded,
		CodeResourceExhausted, CodeInternal:
		return true
	}
	return c >= CodeApplicationMin
}

// Error is every failure of a call or connection. Is compares Code only, so
// errors.Is(err, pipit.ErrUnavailable) holds for any UNAVAILABLE error.
type Error struct {
	Code    Code
	Message string
	// Cause is what led to the error locally (ctx.Err(), an I/O error, a *CodecError), or nil.
	Cause error
	// wire is set for a code received in a STATUS: a reserved number (11-255) is then
	// UNKNOWN, never the local CONNECTION_CLOSED.
	wire bool
}

// Sentinels for errors.Is.
var (
	ErrCancelled         = &Error{Code: CodeCancelled}
	ErrUnknownService    = &Error{Code: CodeUnknownService}
	ErrUnknownMethod     = &Error{Code: CodeUnknownMethod}
	ErrInvalidArgument   = &Error{Code: CodeInvalidArgument}
	ErrApplication       = &Error{Code: CodeApplicationError}
	ErrDeadlineExceeded  = &Error{Code: CodeDeadlineExceeded}
	ErrResourceExhausted = &Error{Code: CodeResourceExhausted}
	ErrUnavailable       = &Error{Code: CodeUnavailable}
	ErrProtocol          = &Error{Code: CodeProtocolError}
	ErrInternal          = &Error{Code: CodeInternal}
	ErrConnectionClosed  = &Error{Code: CodeConnectionClosed}
)

// Unknown reports whether the code is a reserved number (11-255) received from the peer,
// which surfaces as UNKNOWN with its number (§12, §13.1).
func (e *Error) Unknown() bool {
	return e.wire && e.Code >= CodeConnectionClosed && e.Code < CodeApplicationMin
}

func (e *Error) codeName() string {
	if e.wire && e.Code >= CodeConnectionClosed && e.Code < CodeApplicationMin {
		return "UNKNOWN(" + strconv.FormatUint(uint64(e.Code), 10) + ")"
	}
	return e.Code.String()
}

func (e *Error) Error() string {
	s := "pipit: " + e.codeName()
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Cause != nil {
		s += " (" + e.Cause.Error() + ")"
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	if e.wire && e.Code == CodeConnectionClosed {
		return t.wire && t.Code == e.Code
	}
	return t.Code == e.Code
}

// Errorf-free constructor: NewError returns an *Error with code and message.
func NewError(code Code, message string) *Error { return &Error{Code: code, Message: message} }

// cutMessage cuts s to at most MaxStatusMessageBytes bytes, on a character boundary.
func cutMessage(s string) string {
	if len(s) <= MaxStatusMessageBytes {
		return s
	}
	n := MaxStatusMessageBytes
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

var sessionViolations = []string{
	ViolationBadHello, ViolationIDInUse, ViolationNoSuchCall, ViolationSecondMessage,
	ViolationNoCredit, ViolationCreditOverflow, ViolationTextContinuation,
	ViolationDataComplete, ViolationOKMidMessage, ViolationSecondGoaway, ViolationBadGoaway,
}
