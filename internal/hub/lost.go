package hub

// lost is the engine's Handlers.Lost: publications of channel may have
// been missed by this hub (the engine's delivery was interrupted and is
// back). Every session attached to channel goes back to reading history
// from the last offset it queued (replay.go): the hole is filled, a gap
// is sent only for what history no longer holds, and live publications
// wait in pending meanwhile. It only marks the sessions and starts their
// pagers: it neither blocks nor calls the engine, as Handlers requires.
func (h *Hub) lost(channel string) {
	h.lostSigs.Add(1)
	h.log.Warn("engine: publications may have been missed; resyncing from history", "channel", channel)
	h.mu.RLock()
	ch := h.channels[channel]
	h.mu.RUnlock()
	if ch == nil {
		return
	}
	ch.mu.Lock()
	for s := range ch.subs {
		s.resync(channel)
	}
	ch.mu.Unlock()
}
