package server

import (
	"time"

	"github.com/duplexhq/duplex/msg"
)

// The pinger: one goroutine per server (not a ticker per connection) pings
// every WebSocket once per Config.PingInterval, a slot of connections at a
// time, and drops a peer silent for two intervals. The pings themselves
// are written by the writers (ws_write.go).

// wsPingSlots spreads pings over the interval: the sweeper wakes this many
// times per interval and pings one slot's connections each time, so their
// pongs (and the readers they wake) do not all arrive at once.
const wsPingSlots = 10

// sweep pings every connection once per PingInterval, a slot of them at a
// time, and drops those silent since their slot's previous turn twice. One
// goroutine per server, not a ticker per connection; the pings are written
// by the writers.
func (st *wsState) sweep(s *Server, stop <-chan struct{}, end func()) {
	defer end()
	tick := time.NewTicker(s.cfg.PingInterval / wsPingSlots)
	defer tick.Stop()
	var conns []*wsConn
	for turn := 0; ; turn = (turn + 1) % wsPingSlots {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		st.mu.Lock()
		select {
		case <-stop: // stopped while the tick fired; a new sweeper may run
			st.mu.Unlock()
			return
		default:
		}
		conns = conns[:0]
		for wc := range st.live {
			if wc.slot == turn {
				conns = append(conns, wc)
			}
		}
		st.mu.Unlock()
		for _, wc := range conns {
			if wc.alive.Swap(false) {
				wc.silent = 0
			} else if wc.silent++; wc.silent >= 2 {
				// Silent for two intervals: not listening, so no close
				// frame; the client sees the connection drop.
				s.log.Debug("websocket peer silent for two ping intervals: dropped")
				wc.dropped.Store(true)
				wc.sess.Close(msg.CloseGoingAway, "peer silent for two ping intervals")
				wc.c.CloseNow()
				continue
			}
			// The pong sets alive.
			wc.pingDue.Store(true)
			if wc.writing.CompareAndSwap(false, true) {
				wc.schedule()
			}
		}
		clear(conns)
	}
}
