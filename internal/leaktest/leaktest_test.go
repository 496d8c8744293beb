package leaktest

import (
	"strings"
	"testing"
	"time"
)

// recorder is a testing.TB that keeps its errors and cleanups, so a check
// can be run to completion and its verdict read.
type recorder struct {
	testing.TB
	errs     []string
	cleanups []func()
}

func (r *recorder) Helper()                        {}
func (r *recorder) Cleanup(f func())               { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(format string, a ...any) { r.errs = append(r.errs, format) }
func (r *recorder) finish() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestCheckFindsALeakAndIgnoresWhatFinished(t *testing.T) {
	stop := make(chan struct{})
	r := &recorder{TB: t}
	Check(r, &Options{Grace: 50 * time.Millisecond})
	go func() { <-stop }() // still running at the end: a leak
	done := make(chan struct{})
	go func() { close(done) }() // finished: not a leak
	<-done
	r.finish()
	close(stop)
	if len(r.errs) != 1 || !strings.Contains(r.errs[0], "leaked") {
		t.Fatalf("errors %q, want one leak report", r.errs)
	}

	r2 := &recorder{TB: t}
	Check(r2, nil)
	r2.finish()
	if len(r2.errs) != 0 {
		t.Fatalf("nothing started, yet %q", r2.errs)
	}
}

func TestOptionsBenign(t *testing.T) {
	o := &Options{Ignore: []string{"net/http.(*persistConn)"}, Never: []string{"internal/proxy.(*"}}
	cases := map[string]bool{
		"goroutine 7 [chan receive]:\ntesting.tRunner(...)":                                     true,
		"goroutine 8 [IO wait]:\nnet/http.(*persistConn).readLoop(...)":                         true,
		"goroutine 9 [IO wait]:\nmy/pkg.serve(...)":                                             false,
		"goroutine 10 [select]:\ninternal/proxy.(*Server).serveConn(...)\ntesting.tRunner(...)": false,
	}
	for stack, want := range cases {
		if got := o.benign(stack); got != want {
			t.Errorf("benign(%q) = %v, want %v", stack, got, want)
		}
	}
}
