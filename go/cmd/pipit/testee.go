package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"strconv"
	"sync/atomic"
	"time"

	pipit "github.com/pipit-rpc/pipit/go"
)

// The testee service of spec/TESTEE.md.

var cancellations atomic.Int64

func invalid(msg string) error { return &pipit.Error{Code: pipit.CodeInvalidArgument, Message: msg} }

// parseNum reads a decimal number: ASCII digits only, no sign, no spaces.
func parseNum(b []byte, max uint64) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (max-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

func newTestee() *pipit.Mux {
	m := pipit.NewMux()
	m.HandleUnary("testee", "echo", func(ctx context.Context, req *pipit.Request) ([]byte, error) {
		req.SetTextReply(req.Text)
		return req.Payload, nil
	})
	m.HandleUnary("testee", "sha256", func(ctx context.Context, req *pipit.Request) ([]byte, error) {
		h := sha256.Sum256(req.Payload)
		return h[:], nil
	})
	m.HandleStream("testee", "rows", func(ctx context.Context, req *pipit.Request, w *pipit.StreamWriter) error {
		countB, sizeB, hasSize := bytes.Cut(req.Payload, []byte(" "))
		count, ok := parseNum(countB, 4294967295)
		var size uint64
		if ok && hasSize {
			size, ok = parseNum(sizeB, 16777216)
		}
		if !ok {
			return invalid(`rows expects "<count>" or "<count> <size>" (count 0 to 4294967295, size 0 to 16777216)`)
		}
		for i := uint64(0); i < count; i++ {
			msg := strconv.AppendUint(make([]byte, 0, max(int(size), 20)), i, 10)
			for uint64(len(msg)) < size {
				msg = append(msg, ' ')
			}
			if err := w.SendText(msg); err != nil {
				return err
			}
		}
		return nil
	})
	m.HandleUnary("testee", "fail", func(ctx context.Context, req *pipit.Request) ([]byte, error) {
		codeB, msg, _ := bytes.Cut(req.Payload, []byte(" "))
		code, ok := parseNum(codeB, 4294967295)
		if !ok || code == 0 {
			return nil, invalid(`fail expects "<code>" or "<code> <message>" with code 1 to 4294967295`)
		}
		return nil, &pipit.Error{Code: pipit.Code(code), Message: string(msg)}
	})
	m.HandleUnary("testee", "sleep", func(ctx context.Context, req *pipit.Request) ([]byte, error) {
		ms, ok := parseNum(req.Payload, 1<<40)
		if !ok {
			return nil, invalid(`sleep expects "<ms>"`)
		}
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return []byte{}, nil
		case <-ctx.Done():
			cancellations.Add(1)
			return nil, ctx.Err()
		}
	})
	m.HandleUnary("testee", "cancellations", func(ctx context.Context, req *pipit.Request) ([]byte, error) {
		if len(req.Payload) != 0 {
			return nil, invalid("cancellations expects an empty request")
		}
		req.SetTextReply(true)
		return strconv.AppendInt(nil, cancellations.Load(), 10), nil
	})
	m.HandleUnary("testee", "callback", func(ctx context.Context, req *pipit.Request) ([]byte, error) {
		var opts []pipit.CallOption
		if req.Text {
			opts = append(opts, pipit.Text())
		}
		var text bool
		opts = append(opts, pipit.ReplyText(&text))
		res, err := req.Conn().Call(ctx, "testee", "echo", req.Payload, opts...)
		if err != nil {
			return nil, err
		}
		req.SetTextReply(text)
		return res, nil
	})
	m.HandleUnary("testee", "goaway", func(ctx context.Context, req *pipit.Request) ([]byte, error) {
		if len(req.Payload) != 0 {
			return nil, invalid("goaway expects an empty request")
		}
		go req.Conn().GoAway()
		return []byte{}, nil
	})
	return m
}
