package logbuf

import (
	"io"
	"sync"
	"time"
)

// Config configures a [Writer].
type Config struct {
	// Interval is the longest a written line waits in memory. Zero means
	// 100ms.
	Interval time.Duration
	// FlushBytes starts a flush early once this much is buffered. Zero
	// means 64 KiB.
	FlushBytes int
	// MaxBytes bounds the buffer: a Write that finds this much buffered
	// waits until the flusher has taken it. Zero means 1 MiB.
	MaxBytes int
}

// Writer is an asynchronous buffered writer; see the package doc. Its
// methods may be called from any goroutine. Call Close to flush and stop.
//
// Lock order: writeMu before mu.
type Writer struct {
	w   io.Writer
	cfg Config

	kick     chan struct{} // 1-buffered: flush now
	stop     chan struct{} // closed by Close
	stopOnce sync.Once
	done     chan struct{} // closed when the flusher has exited

	writeMu sync.Mutex // held while writing to w, so lines keep their order
	spare   []byte     // the other buffer; guarded by writeMu

	mu sync.Mutex // guards the fields below
	// taken is signalled when a flush took the buffer.
	taken  *sync.Cond
	buf    []byte
	closed bool
	err    error // the first error of the underlying writer
}

// New starts a Writer over w.
func New(w io.Writer, cfg Config) *Writer {
	if cfg.Interval <= 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	if cfg.FlushBytes <= 0 {
		cfg.FlushBytes = 64 << 10
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 1 << 20
	}
	cfg.MaxBytes = max(cfg.MaxBytes, cfg.FlushBytes)
	lw := &Writer{
		w:     w,
		cfg:   cfg,
		kick:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		buf:   make([]byte, 0, cfg.FlushBytes),
		spare: make([]byte, 0, cfg.FlushBytes),
	}
	lw.taken = sync.NewCond(&lw.mu)
	go lw.flushLoop()
	return lw
}

// Write buffers a copy of p. It returns an error only once the underlying
// writer has failed (that error; what was buffered then is lost).
func (lw *Writer) Write(p []byte) (int, error) {
	lw.mu.Lock()
	for !lw.closed && lw.err == nil && len(lw.buf) >= lw.cfg.MaxBytes {
		lw.taken.Wait()
	}
	if lw.err != nil {
		err := lw.err
		lw.mu.Unlock()
		return 0, err
	}
	if lw.closed {
		lw.mu.Unlock()
		lw.writeMu.Lock()
		defer lw.writeMu.Unlock()
		return lw.w.Write(p)
	}
	lw.buf = append(lw.buf, p...)
	full := len(lw.buf) >= lw.cfg.FlushBytes
	lw.mu.Unlock()
	if full {
		select {
		case lw.kick <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// Flush writes out what is buffered now, and returns when it is written.
func (lw *Writer) Flush() error { return lw.drain(false) }

// Close writes out everything buffered and stops the flusher. Later
// writes go straight to the underlying writer. Close does not close it.
func (lw *Writer) Close() error {
	err := lw.drain(true)
	lw.stopOnce.Do(func() { close(lw.stop) })
	<-lw.done
	return err
}

// drain takes the buffer whole, leaves the spare one in its place, and
// writes it outside mu, so Write never waits for the disk unless the
// buffer is full. With closing it also marks the writer closed, in the
// same step, so no later write can overtake what was buffered.
func (lw *Writer) drain(closing bool) error {
	lw.writeMu.Lock()
	defer lw.writeMu.Unlock()
	lw.mu.Lock()
	if closing {
		lw.closed = true
	}
	out := lw.buf
	lw.buf = lw.spare[:0]
	lw.taken.Broadcast()
	err := lw.err
	lw.mu.Unlock()
	if len(out) > 0 && err == nil {
		if _, err = lw.w.Write(out); err != nil {
			lw.mu.Lock()
			lw.err = err
			lw.taken.Broadcast()
			lw.mu.Unlock()
		}
	}
	lw.spare = out[:0]
	return err
}

// flushLoop drains on the timer and when a Write finds FlushBytes
// buffered, until Close.
func (lw *Writer) flushLoop() {
	defer close(lw.done)
	t := time.NewTicker(lw.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-lw.kick:
		case <-lw.stop:
			return
		}
		lw.drain(false)
	}
}
