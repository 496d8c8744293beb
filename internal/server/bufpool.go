package server

import "sync"

// bufPool holds write buffers that outlive one batch only briefly: a
// stream's batch larger than it keeps, a WebSocket connection's own writer
// while its socket is backed up. A busy connection takes one per write
// instead of allocating; an idle one holds none.
var bufPool sync.Pool

// maxPooledBuf is the largest buffer put back; a bigger one (a replay's, a
// large message's) is left to the collector.
const maxPooledBuf = 256 << 10

func getBuf() []byte {
	if p, ok := bufPool.Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return make([]byte, 0, 16<<10)
}

func putBuf(b []byte) {
	if cap(b) > maxPooledBuf {
		return
	}
	b = b[:0]
	bufPool.Put(&b)
}
