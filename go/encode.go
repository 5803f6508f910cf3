package pipit

// The encoder appends canonical frames to a byte slice. Callers check the limits first:
// names and metadata keys of at most MaxNameBytes, and frames within the peer's
// maxFrameBytes (fragmenting larger messages, §8.7). The ...Header variants write
// everything but the payload, so a large payload can be written from where it is.

func appendWord(b []byte, length int, t FrameType, fl Flags) []byte {
	return append(b, byte(length), byte(length>>8), byte(length>>16), byte(t)|byte(fl)<<4)
}

// AppendHeader appends the word and id of a frame whose body (after the id) is bodyLen
// bytes.
func AppendHeader(b []byte, t FrameType, fl Flags, id uint32, bodyLen int) []byte {
	b = appendWord(b, varintSize(id)+bodyLen, t, fl)
	return appendVarint(b, id)
}

// AppendHello appends a HELLO frame with the given settings, in order.
func AppendHello(b []byte, version uint32, settings []Setting) []byte {
	n := 0
	for _, s := range settings {
		n += varintSize(s.Key) + varintSize(s.Value)
	}
	b = AppendHeader(b, TypeHello, 0, version, n)
	for _, s := range settings {
		b = appendVarint(b, s.Key)
		b = appendVarint(b, s.Value)
	}
	return b
}

// RequestHeaderSize is the size of a REQUEST frame without its payload.
func RequestHeaderSize(id uint32, service, method string, ext []byte) int {
	n := WordBytes + varintSize(id) + 2 + len(service) + len(method)
	if len(ext) > 0 {
		n += varintSize(uint32(len(ext))) + len(ext)
	}
	return n
}

// AppendRequestHeader appends a REQUEST frame up to its payload, which is payloadLen
// bytes. ext is the encoded ext entries (AppendExt); when it is not empty, EXT is set.
func AppendRequestHeader(b []byte, id uint32, fl Flags, service, method string, ext []byte, payloadLen int) []byte {
	body := 2 + len(service) + len(method) + payloadLen
	fl &^= FlagExt
	if len(ext) > 0 {
		fl |= FlagExt
		body += varintSize(uint32(len(ext))) + len(ext)
	}
	b = AppendHeader(b, TypeRequest, fl, id, body)
	b = append(b, byte(len(service)))
	b = append(b, service...)
	b = append(b, byte(len(method)))
	b = append(b, method...)
	if len(ext) > 0 {
		b = appendVarint(b, uint32(len(ext)))
		b = append(b, ext...)
	}
	return b
}

// AppendRequest appends a whole REQUEST frame.
func AppendRequest(b []byte, id uint32, fl Flags, service, method string, ext, payload []byte) []byte {
	b = AppendRequestHeader(b, id, fl, service, method, ext, len(payload))
	return append(b, payload...)
}

// AppendResponse appends a RESPONSE frame.
func AppendResponse(b []byte, id uint32, fl Flags, payload []byte) []byte {
	b = AppendHeader(b, TypeResponse, fl, id, len(payload))
	return append(b, payload...)
}

// AppendData appends a DATA frame.
func AppendData(b []byte, id uint32, fl Flags, payload []byte) []byte {
	b = AppendHeader(b, TypeData, fl, id, len(payload))
	return append(b, payload...)
}

func appendCoded(b []byte, t FrameType, id, code uint32, msg string) []byte {
	b = AppendHeader(b, t, 0, id, varintSize(code)+len(msg))
	b = appendVarint(b, code)
	return append(b, msg...)
}

// AppendStatus appends a STATUS frame.
func AppendStatus(b []byte, id, code uint32, msg string) []byte {
	return appendCoded(b, TypeStatus, id, code, msg)
}

// AppendGoaway appends a GOAWAY frame for the last accepted request sequence number seq.
func AppendGoaway(b []byte, seq, code uint32, msg string) []byte {
	return appendCoded(b, TypeGoaway, seq, code, msg)
}

// AppendError appends an ERROR frame (id 0).
func AppendError(b []byte, code uint32, msg string) []byte {
	return appendCoded(b, TypeError, 0, code, msg)
}

// AppendCancel appends a CANCEL frame.
func AppendCancel(b []byte, id uint32) []byte { return AppendHeader(b, TypeCancel, 0, id, 0) }

// AppendPing appends a PING frame.
func AppendPing(b []byte, id uint32) []byte { return AppendHeader(b, TypePing, 0, id, 0) }

// AppendPong appends a PONG frame.
func AppendPong(b []byte, id uint32) []byte { return AppendHeader(b, TypePong, 0, id, 0) }

// AppendCredit appends a CREDIT frame granting n (>= 1) messages.
func AppendCredit(b []byte, id, n uint32) []byte {
	b = AppendHeader(b, TypeCredit, 0, id, varintSize(n))
	return appendVarint(b, n)
}

// AppendExtension appends an EXTENSION frame.
func AppendExtension(b []byte, id uint32, fl Flags, body []byte) []byte {
	b = AppendHeader(b, TypeExtension, fl, id, len(body))
	return append(b, body...)
}

// MetadataEntry is one METADATA ext entry.
type MetadataEntry struct{ Key, Value string }

// AppendExt appends ext entries in canonical order: DEADLINE, CREDIT, then METADATA in
// the order given. Keys must be at most MaxNameBytes.
func AppendExt(b []byte, deadlineMs uint32, hasDeadline bool, credit uint32, hasCredit bool, md []MetadataEntry) []byte {
	if hasDeadline {
		b = append(b, ExtDeadline, byte(varintSize(deadlineMs)))
		b = appendVarint(b, deadlineMs)
	}
	if hasCredit {
		b = append(b, ExtCredit, byte(varintSize(credit)))
		b = appendVarint(b, credit)
	}
	for _, m := range md {
		b = append(b, ExtMetadata)
		b = appendVarint(b, uint32(1+len(m.Key)+len(m.Value)))
		b = append(b, byte(len(m.Key)))
		b = append(b, m.Key...)
		b = append(b, m.Value...)
	}
	return b
}
