package hubtest

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// CheckLeaks records the goroutines running now and, when t ends, fails t
// if goroutines started since are still running after a grace period in
// which they may finish (it polls; it does not sleep to synchronise).
// Call it first in a test, before its own Cleanups are registered, so it
// runs after them. Not for parallel tests.
func CheckLeaks(t testing.TB) {
	t.Helper()
	before := goroutineIDs()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		var leaked []string
		for {
			leaked = leaked[:0]
			for id, stack := range goroutineStacks() {
				if _, ok := before[id]; !ok && !benign(stack) {
					leaked = append(leaked, stack)
				}
			}
			if len(leaked) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond) // polling for exit, not synchronising
		}
		if len(leaked) > 0 {
			t.Errorf("hubtest: %d goroutine(s) leaked:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
	})
}

func benign(stack string) bool {
	for _, s := range []string{
		"testing.(*T).Run", "testing.tRunner", "testing.runTests", "runtime.goexit0",
		"net/http.(*persistConn)", // idle keep-alive conns of http.DefaultTransport
		"signal.signal_recv", "os/signal.loop",
	} {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return false
}

func goroutineIDs() map[string]struct{} {
	ids := make(map[string]struct{})
	for id := range goroutineStacks() {
		ids[id] = struct{}{}
	}
	return ids
}

func goroutineStacks() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := make(map[string]string)
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		head, _, _ := strings.Cut(g, "\n")
		// "goroutine 12 [running]:"
		f := strings.Fields(head)
		if len(f) >= 2 {
			out[f[1]] = g
		}
	}
	return out
}
