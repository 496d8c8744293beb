package memory

import (
	"context"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// Presence is exact and in process: each channel's stream holds its members
// and a count per user, so PresenceStats is two map lengths. Joins and
// leaves are handed to Handlers.Presence under the stream's lock, as
// publications are, so the hub sees them in order with the messages.

// Join implements hub.PresenceEngine.
func (e *Engine) Join(ctx context.Context, channel string, m msg.Member) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	handler := e.presenceHandler()
	s := e.get(channel)
	defer s.mu.Unlock()
	s.lastUsed = e.cfg.Now()
	if s.members == nil {
		s.members, s.users = map[string]msg.Member{}, map[string]int{}
	}
	old, had := s.members[m.Client]
	s.members[m.Client] = m
	if had {
		if old.User != m.User {
			s.dropUserLocked(old.User)
			s.addUserLocked(m.User)
		}
		return nil
	}
	s.addUserLocked(m.User)
	if s.subs > 0 && handler != nil {
		handler(hub.NewPresenceEvent(msg.TypeJoin, channel, m))
	}
	return nil
}

// Leave implements hub.PresenceEngine.
func (e *Engine) Leave(ctx context.Context, channel, client string) error {
	handler := e.presenceHandler()
	s := e.get(channel)
	defer s.mu.Unlock()
	m, had := s.members[client]
	if !had {
		return nil
	}
	delete(s.members, client)
	s.dropUserLocked(m.User)
	s.lastUsed = e.cfg.Now()
	if s.subs > 0 && handler != nil {
		handler(hub.NewPresenceEvent(msg.TypeLeave, channel, m))
	}
	return nil
}

// Members implements hub.PresenceEngine.
func (e *Engine) Members(ctx context.Context, channel string) ([]msg.Member, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := e.get(channel)
	defer s.mu.Unlock()
	out := make([]msg.Member, 0, len(s.members))
	for _, m := range s.members {
		out = append(out, m)
	}
	return out, nil
}

// PresenceStats implements hub.PresenceEngine: two counters, whatever the
// number of members.
func (e *Engine) PresenceStats(ctx context.Context, channel string) (int, int, error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	s := e.get(channel)
	defer s.mu.Unlock()
	return len(s.members), len(s.users), nil
}

func (e *Engine) presenceHandler() func(*hub.PresenceEvent) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.presence
}

func (s *stream) addUserLocked(user string) {
	if user != "" {
		s.users[user]++
	}
}

func (s *stream) dropUserLocked(user string) {
	if user == "" {
		return
	}
	if s.users[user]--; s.users[user] <= 0 {
		delete(s.users, user)
	}
}
