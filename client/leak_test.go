package client

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// checkLeaks fails t if goroutines started during the test still run when
// it ends (after a grace period in which they may finish; it polls). The
// client cannot use internal/hubtest, so this is a small copy of its idea.
func checkLeaks(t *testing.T) {
	t.Helper()
	before := goroutines()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			var leaked []string
			for id, stack := range goroutines() {
				if _, ok := before[id]; !ok && !benignGoroutine(stack) {
					leaked = append(leaked, stack)
				}
			}
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%d goroutine(s) leaked:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
				return
			}
			time.Sleep(20 * time.Millisecond) // polling for exit, not synchronising
		}
	})
}

func benignGoroutine(stack string) bool {
	for _, s := range []string{"testing.(*T).Run", "testing.tRunner", "testing.runTests", "runtime.goexit0", "signal.signal_recv"} {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return false
}

func goroutines() map[string]string {
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
		if f := strings.Fields(head); len(f) >= 2 {
			out[f[1]] = g
		}
	}
	return out
}
