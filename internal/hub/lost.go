package hub

// lost is the engine's Handlers.Lost: publications of channel may have
// been missed by this hub (the engine's delivery was interrupted and is
// back). For now it is logged and counted (Stats.Lost); re-reading each
// attached session's position from history, so that the hole is filled
// and a gap sent only for what history no longer holds, is issue 11's
// hub-side step.
func (h *Hub) lost(channel string) {
	h.lostSigs.Add(1)
	h.log.Warn("engine: publications may have been missed", "channel", channel)
}
