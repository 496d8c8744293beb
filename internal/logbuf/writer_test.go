package logbuf

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// countingWriter records what reaches the underlying writer and how many
// Write calls it took.
type countingWriter struct {
	mu    sync.Mutex
	b     bytes.Buffer
	calls int
	fail  error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.fail != nil {
		return 0, c.fail
	}
	return c.b.Write(p)
}

func (c *countingWriter) state() (string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String(), c.calls
}

// TestBatchesOnTimer: lines written within one interval reach the
// underlying writer together, in one Write, when the interval ends and
// not before.
func TestBatchesOnTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var cw countingWriter
		w := New(&cw, Config{Interval: 100 * time.Millisecond})
		defer w.Close()
		for i := range 100 {
			fmt.Fprintf(w, "line %d\n", i)
		}
		synctest.Wait()
		if s, calls := cw.state(); calls != 0 || s != "" {
			t.Fatalf("before the interval: %d writes, %q", calls, s)
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		s, calls := cw.state()
		if calls != 1 || strings.Count(s, "\n") != 100 || !strings.HasPrefix(s, "line 0\n") || !strings.HasSuffix(s, "line 99\n") {
			t.Fatalf("after the interval: %d writes, %d lines", calls, strings.Count(s, "\n"))
		}
	})
}

// TestFlushesWhenFull: FlushBytes buffered starts a flush without waiting
// for the timer.
func TestFlushesWhenFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var cw countingWriter
		w := New(&cw, Config{Interval: time.Hour, FlushBytes: 64})
		defer w.Close()
		w.Write(bytes.Repeat([]byte("x"), 64))
		synctest.Wait()
		if s, calls := cw.state(); calls != 1 || len(s) != 64 {
			t.Fatalf("%d writes, %d bytes", calls, len(s))
		}
	})
}

// TestCloseLosesNothing: everything written before Close is out when it
// returns, in order, from many writers; later writes go straight through.
func TestCloseLosesNothing(t *testing.T) {
	var cw countingWriter
	w := New(&cw, Config{Interval: time.Hour, FlushBytes: 1 << 10, MaxBytes: 4 << 10})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				fmt.Fprintf(w, "g%d %d\n", g, i)
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, "after close\n")
	s, _ := cw.state()
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) != 8001 || lines[8000] != "after close" {
		t.Fatalf("%d lines, last %q", len(lines), lines[len(lines)-1])
	}
	next := map[string]int{}
	for _, l := range lines[:8000] {
		var g string
		var i int
		fmt.Sscanf(l, "%s %d", &g, &i)
		if next[g] != i {
			t.Fatalf("goroutine %s: line %d, want %d (reordered or lost)", g, i, next[g])
		}
		next[g]++
	}
}

// TestBackPressure: a full buffer makes Write wait for the flusher rather
// than grow or drop.
func TestBackPressure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var cw countingWriter
		release := make(chan struct{})
		w := New(gateWriter{&cw, release}, Config{Interval: time.Hour, FlushBytes: 8, MaxBytes: 16})
		w.Write([]byte("01234567")) // kicks a flush, which blocks in cw
		synctest.Wait()
		w.Write([]byte("89abcdef0123456")) // 15 bytes: room
		wrote := make(chan struct{})
		go func() {
			w.Write([]byte("z")) // 16 buffered: over MaxBytes with this, waits
			w.Write([]byte("y"))
			close(wrote)
		}()
		synctest.Wait()
		select {
		case <-wrote:
			t.Fatal("Write past MaxBytes did not wait")
		default:
		}
		close(release)
		<-wrote
		w.Close()
		if s, _ := cw.state(); s != "0123456789abcdef0123456zy" {
			t.Fatalf("got %q", s)
		}
	})
}

// gateWriter blocks every Write until gate is closed.
type gateWriter struct {
	w    *countingWriter
	gate chan struct{}
}

func (g gateWriter) Write(p []byte) (int, error) {
	<-g.gate
	return g.w.Write(p)
}

// TestWriterError: once the underlying writer fails, Write and Close say
// so.
func TestWriterError(t *testing.T) {
	cw := countingWriter{fail: errors.New("disk full")}
	w := New(&cw, Config{Interval: time.Hour})
	w.Write([]byte("a\n"))
	if err := w.Flush(); err == nil || err.Error() != "disk full" {
		t.Fatalf("flush: %v", err)
	}
	if _, err := w.Write([]byte("b\n")); err == nil {
		t.Fatal("write after failure: no error")
	}
	if err := w.Close(); err == nil {
		t.Fatal("close: no error")
	}
}
