package redis

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// Presence on Redis (presence_scripts.go has the layout). Each engine keeps
// its own members in local and refreshes them every PresenceTTL/4, all
// channels in one round trip (refresh); each refresh sets a member to
// expire 3/4 of PresenceTTL later and sweeps the channel, so the members
// of a hub that died expire within 3/4 TTL of its last refresh and are
// swept, leaves announced, within one more refresh interval by any hub
// still refreshing the channel: within PresenceTTL in all.

// sweepLimit bounds the expired members one script call removes, so a
// call's cost is bounded; the next one takes the rest.
const sweepLimit = 1000

// refreshChunk bounds the members of one refresh script call; a batch of
// more is several calls sent together (one round trip).
const refreshChunk = 2000

func (e *Engine) presenceKeys(ch string) []string {
	p := e.cfg.Prefix + ":{" + ch + "}:"
	return []string{p + "pm", p + "pz", p + "pu"}
}

func (e *Engine) sharded() string {
	if e.target.Cluster {
		return "1"
	}
	return "0"
}

// presenceExpiry is how long after a refresh a member expires.
func (e *Engine) presenceExpiry() time.Duration { return e.cfg.PresenceTTL - e.refreshEvery() }

func (e *Engine) refreshEvery() time.Duration { return e.cfg.PresenceTTL / 4 }

// keyTTL bounds the presence keys' life: they outlive the last refresh
// long enough for a sweep to find them, and no longer.
func (e *Engine) keyTTL() string {
	return strconv.FormatInt((2 * e.cfg.PresenceTTL).Milliseconds(), 10)
}

// Join implements hub.PresenceEngine: one joinScript call.
func (e *Engine) Join(ctx context.Context, channel string, m msg.Member) error {
	js, err := json.Marshal(m)
	if err != nil {
		return err
	}
	e.presMu.Lock()
	if e.local[channel] == nil {
		e.local[channel] = map[string]string{}
	}
	e.local[channel][m.Client] = string(js)
	e.presMu.Unlock()
	e.startPresence()
	err = e.runPresence(ctx, "presence join", joinScript, e.presenceKeys(channel),
		[]string{m.Client, string(js), strconv.FormatInt(e.presenceExpiry().Milliseconds(), 10),
			e.keyTTL(), e.pubsubName(channel), e.sharded(), strconv.Itoa(sweepLimit)})
	if err != nil {
		// Not a member here either: the hub failed the subscription.
		e.forget(channel, m.Client)
	}
	return err
}

// Leave implements hub.PresenceEngine: one leaveScript call.
func (e *Engine) Leave(ctx context.Context, channel, client string) error {
	e.forget(channel, client)
	return e.runPresence(ctx, "presence leave", leaveScript, e.presenceKeys(channel),
		[]string{client, e.pubsubName(channel), e.sharded()})
}

func (e *Engine) forget(channel, client string) {
	e.presMu.Lock()
	defer e.presMu.Unlock()
	if l := e.local[channel]; l != nil {
		delete(l, client)
		if len(l) == 0 {
			delete(e.local, channel)
		}
	}
}

func (e *Engine) runPresence(ctx context.Context, op string, script *rueidis.Lua, keys, args []string) error {
	parent := ctx
	ctx, cancel := e.callContext(ctx)
	defer cancel()
	rdb, err := e.client()
	if err != nil {
		return err
	}
	start := time.Now()
	err = script.Exec(ctx, rdb, keys, args).Error()
	e.stats.observe(time.Since(start), err)
	if err != nil {
		return e.callError(parent, op, err)
	}
	return nil
}

// Members implements hub.PresenceEngine: one membersScript call, which
// sweeps the expired first.
func (e *Engine) Members(ctx context.Context, channel string) ([]msg.Member, error) {
	parent := ctx
	ctx, cancel := e.callContext(ctx)
	defer cancel()
	rdb, err := e.client()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	vals, err := membersScript.Exec(ctx, rdb, e.presenceKeys(channel),
		[]string{strconv.Itoa(sweepLimit), e.pubsubName(channel), e.sharded()}).AsStrSlice()
	e.stats.observe(time.Since(start), err)
	if err != nil && !rueidis.IsRedisNil(err) {
		return nil, e.callError(parent, "presence", err)
	}
	out := make([]msg.Member, 0, len(vals))
	for _, v := range vals {
		m, err := decodeMember(v)
		if err != nil {
			e.log.Error("redis engine: skipping a malformed member", "channel", channel, "err", err)
			continue
		}
		out = append(out, m)
	}
	return out, nil
}

// PresenceStats implements hub.PresenceEngine: two HLENs after a bounded
// sweep, in one statsScript call.
func (e *Engine) PresenceStats(ctx context.Context, channel string) (int, int, error) {
	parent := ctx
	ctx, cancel := e.callContext(ctx)
	defer cancel()
	rdb, err := e.client()
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	n, err := statsScript.Exec(ctx, rdb, e.presenceKeys(channel),
		[]string{strconv.Itoa(sweepLimit), e.pubsubName(channel), e.sharded()}).AsIntSlice()
	e.stats.observe(time.Since(start), err)
	if err != nil {
		return 0, 0, e.callError(parent, "presence stats", err)
	}
	if len(n) != 2 {
		return 0, 0, fmt.Errorf("redis presence stats: unexpected reply of %d items", len(n))
	}
	return int(n[0]), int(n[1]), nil
}

// decodeMember reads a member as Join wrote it, checking what a store
// anyone may write could hold.
func decodeMember(s string) (msg.Member, error) {
	var m msg.Member
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return msg.Member{}, err
	}
	if !msg.ValidClientID(m.Client) {
		return msg.Member{}, errors.New("invalid client id")
	}
	if len(m.Info) > 0 {
		if err := msg.CheckStored(m.Info); err != nil {
			return msg.Member{}, err
		}
		if string(m.Info) == "null" {
			m.Info = nil
		}
	}
	return m, nil
}

// decodePresence reads a join or leave payload ("!j " or "!l " and the
// member JSON).
func decodePresence(channel, payload string) (*hub.PresenceEvent, error) {
	if len(payload) < 4 || payload[0] != '!' || payload[2] != ' ' {
		return nil, errors.New("malformed presence payload")
	}
	var typ string
	switch payload[1] {
	case 'j':
		typ = msg.TypeJoin
	case 'l':
		typ = msg.TypeLeave
	default:
		return nil, errors.New("unknown presence event")
	}
	m, err := decodeMember(payload[3:])
	if err != nil {
		return nil, err
	}
	return hub.NewPresenceEvent(typ, channel, m), nil
}

// presenceMessage hands a join or leave to the hub, if its channel is
// subscribed here. It runs on rueidis's reading goroutine, as message does,
// so the hub sees it in order with the channel's publications.
func (s *shard) presenceMessage(ch, payload string) {
	ev, err := decodePresence(ch, payload)
	if err != nil {
		s.e.log.Error("redis engine: dropping a malformed presence event", "channel", ch, "err", err)
		return
	}
	s.mu.Lock()
	st := s.chans[ch]
	live := st != nil && st.confirmed && st.live.Load()
	s.mu.Unlock()
	if !live {
		return
	}
	if f := s.e.handlers.Presence; f != nil {
		f(ev)
	}
}

// startPresence starts the refresher once.
func (e *Engine) startPresence() {
	e.presOnce.Do(func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.closed {
			return
		}
		e.wg.Go(e.refreshLoop)
	})
}

func (e *Engine) refreshLoop() {
	t := time.NewTicker(e.refreshEvery())
	defer t.Stop()
	for {
		select {
		case <-e.presStop:
			return
		case <-t.C:
			if err := e.RefreshPresence(context.Background()); err != nil {
				e.log.Warn("redis engine: presence refresh failed", "err", err)
			}
		}
	}
}

// RefreshPresence refreshes every member of this engine and sweeps their
// channels now, in one round trip; the refresher calls it every
// PresenceTTL/4.
func (e *Engine) RefreshPresence(ctx context.Context) error {
	type group struct {
		keys, args, channels []string
		members              int
	}
	head := []string{strconv.FormatInt(e.presenceExpiry().Milliseconds(), 10), e.keyTTL(),
		strconv.Itoa(sweepLimit), e.sharded()}
	groups := map[int][]*group{} // by hash slot (0 on a single Redis)
	e.presMu.Lock()
	for ch, ms := range e.local {
		key := 0
		if e.target.Cluster {
			key = slot(e.pubsubName(ch))
		}
		gs := groups[key]
		if len(gs) == 0 || gs[len(gs)-1].members+len(ms) > refreshChunk && gs[len(gs)-1].members > 0 {
			gs = append(gs, &group{args: append([]string(nil), head...)})
			groups[key] = gs
		}
		g := gs[len(gs)-1]
		g.keys = append(g.keys, e.presenceKeys(ch)...)
		g.channels = append(g.channels, ch)
		g.args = append(g.args, e.pubsubName(ch), strconv.Itoa(len(ms)))
		for c := range ms {
			g.args = append(g.args, c)
		}
		g.members += len(ms)
	}
	e.presMu.Unlock()
	if len(groups) == 0 {
		return nil
	}
	rdb, err := e.client()
	if err != nil {
		return err
	}
	var all []*group
	cmds := make(rueidis.Commands, 0, len(groups))
	for _, gs := range groups {
		for _, g := range gs {
			all = append(all, g)
			cmds = append(cmds, rdb.B().Evalsha().Sha1(refreshSHA).Numkeys(int64(len(g.keys))).Key(g.keys...).Arg(g.args...).Build())
		}
	}
	parent := ctx
	ctx, cancel := e.callContext(ctx)
	defer cancel()
	start := time.Now()
	res := rdb.DoMulti(ctx, cmds...)
	e.stats.PresenceRefreshes.Add(1)
	var firstErr error
	type missing struct{ channel, client string }
	var lost []missing
	for i, r := range res {
		err := r.Error()
		if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			// Redis lost the script (a restart): Exec loads it.
			r = refreshScript.Exec(ctx, rdb, all[i].keys, all[i].args)
			err = r.Error()
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		vals, err := r.AsStrSlice()
		if err != nil {
			firstErr = err
			continue
		}
		for j := 1; j+1 < len(vals); j += 2 {
			k, err := strconv.Atoi(vals[j])
			if err == nil && k >= 0 && k < len(all[i].channels) {
				lost = append(lost, missing{all[i].channels[k], vals[j+1]})
			}
		}
	}
	e.stats.observe(time.Since(start), firstErr)
	// Members Redis swept while this engine lived (it was too slow to
	// refresh them): join them again, with a join event, if they are
	// still its own; one that left meanwhile is gone from local.
	// presMu is held across the join, so that a Leave of the member
	// (which forgets it under presMu first) runs its script after.
	for _, m := range lost {
		e.presMu.Lock()
		if js, ok := e.local[m.channel][m.client]; ok {
			err := e.runPresence(parent, "presence join", joinScript, e.presenceKeys(m.channel),
				[]string{m.client, js, strconv.FormatInt(e.presenceExpiry().Milliseconds(), 10),
					e.keyTTL(), e.pubsubName(m.channel), e.sharded(), strconv.Itoa(sweepLimit)})
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}
		e.presMu.Unlock()
	}
	return firstErr
}

// refreshSHA is refreshScript's SHA-1, for EVALSHA in a pipeline.
var refreshSHA = func() string {
	h := sha1.Sum([]byte(presenceLib + refreshBody))
	return hex.EncodeToString(h[:])
}()
