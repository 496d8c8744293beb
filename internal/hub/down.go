package hub

import "github.com/duplexhq/duplex/msg"

// ErrEngineDown is what Subscribe returns while the engine says it cannot
// deliver (Handlers.Down): 503 unavailable, to be retried.
var ErrEngineDown = &msg.Error{Code: msg.CodeUnavailable, Message: "engine unavailable: retry with the cursor"}

// CloseEngineDown is the close code of the sessions the hub ends on
// Handlers.Down: 1011, on which clients reconnect and resume from their
// cursors (msg.CloseCode.Reconnect).
const CloseEngineDown = msg.CloseInternal

// down is the engine's Handlers.Down. A session kept open while the
// engine cannot deliver would wait in silence for as long as the outage
// lasts; closed, its client retries with its cursor (on this hub, which
// answers 503 until the engine is back, or on another one behind the same
// load balancer) and misses nothing that history still holds. A short
// drop never gets here: the engine waits out a grace, and a connection
// back within it is a Lost, filled from history without a disconnect.
func (h *Hub) down(err error) {
	h.downs.Add(1)
	h.engineDown.Store(true)
	h.log.Error("engine down: closing sessions; subscribes answer 503 until it is back", "err", err)
	h.mu.RLock()
	sessions := make([]*Session, 0, len(h.sessions))
	for s := range h.sessions {
		sessions = append(sessions, s)
	}
	h.mu.RUnlock()
	reason := "engine unavailable: resume with your cursor"
	for _, s := range sessions {
		if s.Channels() > 0 { // a publisher's connection stays
			s.Close(CloseEngineDown, reason)
		}
	}
}

// up is the engine's Handlers.Up.
func (h *Hub) up() {
	h.engineDown.Store(false)
	h.log.Info("engine back: subscribes accepted again")
}
