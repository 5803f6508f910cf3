package pipit

// Options are the limits of one connection. Zero fields take the defaults shown, which are
// the same as the TypeScript implementation's (spec/constants.json implementationDefaults).
type Options struct {
	// MaxFrameBytes is the largest frame accepted, announced in HELLO. Default 262144;
	// clamped to [65536, 16777219].
	MaxFrameBytes int
	// MaxMessageBytes is the largest reassembled message accepted, announced. Default 16 MiB;
	// a negative value means 0: only empty messages.
	MaxMessageBytes int
	// MaxInflight is the number of the peer's calls served at once, announced; beyond it
	// requests are refused with RESOURCE_EXHAUSTED. Default 1024.
	MaxInflight int
	// MaxQueuedCalls is the number of our calls that may wait for the peer's MAX_INFLIGHT
	// (or for output to drain); beyond it calls fail with RESOURCE_EXHAUSTED. Default 65536.
	MaxQueuedCalls int
	// MaxReassemblyBytes bounds the bytes of partial messages held at once, all calls
	// together. Default 64 MiB.
	MaxReassemblyBytes int
	// InitialCredit is the stream window of a stream call that sets none. Default 128.
	InitialCredit int
	// MaxStreamWindowBytes bounds how far an adaptive stream window grows, in bytes of
	// messages of the average size seen. Default 1 MiB.
	MaxStreamWindowBytes int
	// MaxWriteBufferBytes is the unsent output above which new work is held (requests not
	// run, producers wait, our calls queue) while reading goes on. Default 4 MiB.
	MaxWriteBufferBytes int
	// NoHello skips sending HELLO (the peer then assumes the wire defaults of §11.3).
	NoHello bool
	// NoIntrospection turns off the $pipit/methods method (§8.11).
	NoIntrospection bool
	// ReuseRequestMemory lets the connection reuse a served call's memory once its handler
	// has returned: the Request, its Payload (a large one comes from a pool) and, when the
	// handler never used it, its ctx. A handler must then treat req, req.Payload and ctx as
	// valid only until it returns, like the body of a net/http request: copy what it keeps,
	// and give a goroutine that outlives it a context of its own. It saves the allocations
	// of a served call and keeps a busy server's heap small. Off by default: a handler may
	// keep what it is given.
	ReuseRequestMemory bool
}

func (o *Options) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.MaxFrameBytes, DefaultOptMaxFrameBytes)
	if o.MaxMessageBytes < 0 {
		o.MaxMessageBytes = 0
	} else {
		def(&o.MaxMessageBytes, DefaultOptMaxMessageBytes)
	}
	def(&o.MaxInflight, DefaultOptMaxInflight)
	def(&o.MaxQueuedCalls, DefaultOptMaxQueuedCalls)
	def(&o.MaxReassemblyBytes, DefaultOptMaxReassemblyBytes)
	def(&o.InitialCredit, DefaultOptInitialCredit)
	def(&o.MaxStreamWindowBytes, DefaultOptMaxStreamWindowBytes)
	def(&o.MaxWriteBufferBytes, DefaultOptMaxWriteBufferBytes)
	if o.MaxFrameBytes < MinMaxFrameBytes {
		o.MaxFrameBytes = MinMaxFrameBytes
	}
	if o.MaxFrameBytes > MaxFrameBytesLimit {
		o.MaxFrameBytes = MaxFrameBytesLimit
	}
	var maxU32 int64 = 1<<32 - 1
	if int64(o.MaxInflight) > maxU32 {
		o.MaxInflight = int(maxU32) // only reachable where int is 64 bits
	}
	if int64(o.MaxMessageBytes) > maxU32 {
		o.MaxMessageBytes = int(maxU32)
	}
	if o.InitialCredit > MaxCredit {
		o.InitialCredit = MaxCredit
	}
}
