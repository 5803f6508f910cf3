package pipit

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestStress: both ends call each other at once with unary and stream calls, large and
// small payloads, cancels and deadlines; every call ends with a result it may have, and
// nothing is left running afterwards.
func TestStress(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	before := runtime.NumGoroutine()
	forTransports(t, func(t *testing.T, tr transport) {
		client, server := connPair(t, tr, testMux(), Options{MaxInflight: 16, MaxWriteBufferBytes: 256 << 10})
		var wg sync.WaitGroup
		deadline := time.Now().Add(2 * time.Second)
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(g), 7))
				conn := client
				if g%2 == 1 {
					conn = server
				}
				for time.Now().Before(deadline) {
					ctx, cancel := context.WithCancel(context.Background())
					switch rng.IntN(3) {
					case 0:
						ctx, cancel = context.WithTimeout(context.Background(), time.Duration(rng.IntN(20))*time.Millisecond)
					case 1:
						d := time.Duration(rng.IntN(5)) * time.Millisecond
						go func() { time.Sleep(d); cancel() }()
					}
					switch rng.IntN(4) {
					case 0:
						p := bytes.Repeat([]byte{byte(g)}, rng.IntN(300000))
						got, err := conn.Call(ctx, "t", "echo", p)
						if err == nil && !bytes.Equal(got, p) {
							t.Errorf("echo of %d bytes came back as %d", len(p), len(got))
						}
						checkErr(t, err)
					case 1:
						_, err := conn.Call(ctx, "t", "sleep", []byte(strconv.Itoa(rng.IntN(10))))
						checkErr(t, err)
					default:
						n := 0
						limit := rng.IntN(300)
						for m, err := range conn.Stream(ctx, "t", "rows", []byte("200"), Credit(1+rng.IntN(8))) {
							if err != nil {
								checkErr(t, err)
								break
							}
							if string(m) != strconv.Itoa(n) {
								t.Errorf("stream message %d is %q", n, m)
							}
							if n++; n == limit {
								break
							}
						}
					}
					cancel()
				}
			}()
		}
		wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), scale(5*time.Second))
		defer cancel()
		if err := client.Shutdown(ctx); err != nil {
			t.Fatalf("shutdown: %v", err)
		}
		<-server.Done()
	})
	for i := 0; i < 200 && runtime.NumGoroutine() > before+2; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines left (%d before)\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

func checkErr(t *testing.T, err error) {
	if err == nil {
		return
	}
	if errors.Is(err, ErrCancelled) || errors.Is(err, ErrDeadlineExceeded) || errors.Is(err, ErrResourceExhausted) {
		return
	}
	t.Errorf("unexpected error: %v", err)
}
