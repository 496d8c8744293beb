// Package leaktest checks tests for goroutine leaks: goroutines a test
// started that still run once it and its cleanups are done. It uses the
// standard library only, so any package's tests may use it, the public
// client's and the proxy's included.
//
// It compares goroutine IDs before and after; it does not sleep to
// synchronise, it polls for the stragglers to exit within a grace period.
package leaktest

import (
	"net/http"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

// Options adjust a check. The zero value is usable.
type Options struct {
	// Ignore lists substrings of goroutine stacks that are not leaks,
	// besides the test runner's and the signal handler's own.
	Ignore []string
	// Never lists substrings that make a stack a leak even when it
	// matches an ignored pattern: the code under test, say.
	Never []string
	// Grace is how long goroutines have to finish after the test. Zero
	// means 5s.
	Grace time.Duration
}

// runtimeOwn are goroutines of the test runner, the fuzzer and signal
// handling, which come and go by themselves.
var runtimeOwn = []string{
	"testing.(*T).Run", "testing.tRunner", "testing.runTests", "testing.runFuzzing",
	"testing.(*F).Fuzz", "runtime.goexit0", "os/signal.", "signal.signal_recv",
	"runtime.ensureSigM",
}

// Check records the goroutines running now and, when t ends, fails t if
// goroutines started since still run after the grace period. Call it first
// in a test, before the test registers its own cleanups, so that its check
// runs after them. Not for parallel tests.
func Check(t testing.TB, opts *Options) {
	t.Helper()
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Grace <= 0 {
		o.Grace = 5 * time.Second
	}
	before := Stacks()
	t.Cleanup(func() {
		// Idle keep-alive connections of the default client are not the
		// test's goroutines.
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		deadline := time.Now().Add(o.Grace)
		for {
			var leaked []string
			for id, stack := range Stacks() {
				if _, ok := before[id]; !ok && !o.benign(stack) {
					leaked = append(leaked, stack)
				}
			}
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				sort.Strings(leaked)
				t.Errorf("%d goroutine(s) leaked:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
				return
			}
			time.Sleep(5 * time.Millisecond) // polling for exit, not synchronising
		}
	})
}

func (o *Options) benign(stack string) bool {
	for _, s := range o.Never {
		if strings.Contains(stack, s) {
			return false
		}
	}
	for _, list := range [][]string{runtimeOwn, o.Ignore} {
		for _, s := range list {
			if strings.Contains(stack, s) {
				return true
			}
		}
	}
	return false
}

// Stacks returns the stack of every goroutine, by goroutine ID.
func Stacks() map[string]string {
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
		if f := strings.Fields(head); len(f) >= 2 && f[0] == "goroutine" {
			out[f[1]] = g
		}
	}
	return out
}
