package redis

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// Config configures an Engine. URL is required; every other zero value is
// usable.
type Config struct {
	// URL is where Redis is; see ParseURL.
	URL string
	// HistorySize is how many publications each channel keeps. Zero means
	// 1000; negative keeps none.
	HistorySize int
	// HistoryTTL is how long a publication is kept. Zero means 10 minutes.
	HistoryTTL time.Duration
	// StateTTL is how long a channel's epoch and latest offset outlive its
	// last publication; after that the channel starts again with a new
	// epoch. Zero means 24 hours; it is never shorter than HistoryTTL.
	StateTTL time.Duration
	// Timeout bounds each call to Redis (and dialing) whose ctx has no
	// earlier deadline, so a stalled Redis never holds a caller forever.
	// Zero means 5 seconds.
	Timeout time.Duration
	// Prefix begins every key and pub/sub channel name, so that several
	// deployments can share a Redis. Empty means "duplex".
	Prefix string
	// PoolSize bounds the command connections per node, over which
	// rueidis pipelines every caller's commands: the largest power of two
	// not above it, at most 256. Zero means rueidis's default: 4 on a
	// single Redis (fewer with fewer than 4 CPUs), 1 per Cluster node.
	PoolSize int
	// Logger receives the engine's logs. Nil means slog.Default().
	Logger *slog.Logger
	// Linger is how long a channel stays subscribed on Redis after its
	// last Unsubscribe, its messages dropped, so that a reader coming
	// back within it (a long poll: one subscription per request) costs
	// no SUBSCRIBE/UNSUBSCRIBE on Redis. Zero means 30 seconds; negative,
	// none.
	Linger time.Duration
	// DownGrace is how long a pub/sub connection may be down before the
	// engine tells the hub it cannot deliver (hub.Handlers.Down): a drop
	// repaired within it is only a lost delivery, filled from history.
	// Zero means 2 seconds.
	DownGrace time.Duration
	// PresenceTTL is how long the members this engine keeps in Redis
	// outlive it if it stops without a goodbye (a crash): it refreshes
	// them every PresenceTTL/4, and the other hubs sweep them out, with
	// leave events, at most PresenceTTL after (presence.go). Zero means
	// 60 seconds.
	PresenceTTL time.Duration
}

func (c Config) withDefaults() Config {
	c.HistorySize, c.HistoryTTL = hub.HistoryLimits(c.HistorySize, c.HistoryTTL)
	if c.StateTTL <= 0 {
		c.StateTTL = 24 * time.Hour
	}
	c.StateTTL = max(c.StateTTL, c.HistoryTTL)
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Prefix == "" {
		c.Prefix = "duplex"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.DownGrace <= 0 {
		c.DownGrace = 2 * time.Second
	}
	if c.PresenceTTL <= 0 {
		c.PresenceTTL = 60 * time.Second
	}
	if c.Linger == 0 {
		c.Linger = 30 * time.Second
	}
	return c
}

// Engine is the Redis hub.Engine. It is safe for concurrent use. Call
// Close when done.
//
// Lock order: Engine.mu before shard.mu; Engine.healthMu before shard.mu;
// Engine.mu before Engine.clientMu; shard.mu before psConn.mu.
type Engine struct {
	cfg    Config
	target Target
	// rdb holds the rueidis client once made (rueidis connects as it
	// makes it): by Start, or the first call. clientMu serialises making
	// it; taken after Engine.mu (by Start), before no other lock.
	rdb      atomic.Pointer[clientBox]
	clientMu sync.Mutex
	log      *slog.Logger
	stats    Stats

	// handlers is written once by Start, before any shard goroutine
	// exists, and only read after.
	handlers hub.Handlers

	mu      sync.Mutex // guards started, closed, subs, shards
	started bool
	closed  bool
	// subs holds the channels with more Subscribe than Unsubscribe calls,
	// and those lingering after their last Unsubscribe (count 0, linger
	// set).
	subs map[string]*chanState
	// shards are the pub/sub connections: one on a single Redis (key 0),
	// one per hash slot in use on a Cluster.
	shards map[int]*shard

	wg sync.WaitGroup // the shards' reader goroutines

	// healthMu serialises the shards' health changes and the hub's
	// Down/Up calls they make, so those alternate. Taken before a
	// shard.mu, never with Engine.mu.
	healthMu   sync.Mutex
	downShards int // shards down past DownGrace; guarded by healthMu

	// presMu guards local: this engine's presence members, channel →
	// client → member JSON, which the refresher keeps alive. Taken
	// before no other lock; held across a Redis call only to join again
	// a member Redis lost (RefreshPresence). presOnce starts the
	// refresher; presStop stops it.
	presMu   sync.Mutex
	local    map[string]map[string]string
	presOnce sync.Once
	presStop chan struct{}
}

// chanState is one subscribed channel.
type chanState struct {
	count int // guarded by Engine.mu
	// linger, guarded by Engine.mu, ends the Redis subscription once
	// Config.Linger has passed with count at 0.
	linger *time.Timer
	// live is count > 0, once a fence (Engine.fence) is passed: read by
	// the shard's reader without Engine.mu, so that a lingering channel's
	// messages are dropped.
	live atomic.Bool
	// fence, guarded by Engine.mu, is set while a Subscribe brings the
	// channel back from lingering, and closed when it has.
	fence chan struct{}
	// skipEpoch and skipTo, guarded by shard.mu, are the fence: messages
	// of that epoch up to that offset are not delivered.
	skipEpoch string
	skipTo    uint64
	shard     *shard // set once
	// ready is closed when Redis first confirms the subscription.
	ready chan struct{}
	// confirmed is guarded by shard.mu.
	confirmed bool
}

// New returns an Engine for cfg. It does not connect: Start does.
func New(cfg Config) (*Engine, error) {
	t, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Engine{
		cfg: cfg, target: t, log: cfg.Logger,
		subs: make(map[string]*chanState), shards: make(map[int]*shard),
		local: make(map[string]map[string]string), presStop: make(chan struct{}),
	}, nil
}

// Stats returns the engine's metrics; see Stats.
func (e *Engine) Stats() *Stats { return &e.stats }

// Start records h, connects, and checks that Redis answers within ctx.
func (e *Engine) Start(ctx context.Context, h hub.Handlers) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started || e.closed {
		return errors.New("redis engine: started twice or after Close")
	}
	e.started = true
	e.handlers = h
	rdb, err := e.client()
	if err != nil {
		return err
	}
	ctx, cancel := e.callContext(ctx)
	defer cancel()
	if err := rdb.Do(ctx, rdb.B().Ping().Build()).Error(); err != nil {
		return fmt.Errorf("redis engine: %s: %w", clip(e.cfg.URL), err)
	}
	return nil
}

// Close stops every pub/sub connection, waits for their readers and closes
// the client.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	close(e.presStop)
	for _, st := range e.subs {
		if st.linger != nil {
			st.linger.Stop() // one that fired finds the engine closed
		}
	}
	shards := e.shards
	e.shards = map[int]*shard{}
	e.subs = map[string]*chanState{}
	e.mu.Unlock()
	for _, s := range shards {
		s.stop()
	}
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	e.clientMu.Lock()
	if b := e.rdb.Swap(&clientBox{}); b != nil && b.c != nil {
		b.c.Close()
	}
	e.clientMu.Unlock()
	return nil
}

// clientBox holds the rueidis client: nil c once closed.
type clientBox struct{ c rueidis.Client }

// client returns the rueidis client, making it if need be. A failure
// (Redis unreachable) is not kept: the next call tries again.
func (e *Engine) client() (rueidis.Client, error) {
	if b := e.rdb.Load(); b != nil {
		if b.c == nil {
			return nil, errClosed
		}
		return b.c, nil
	}
	e.clientMu.Lock()
	defer e.clientMu.Unlock()
	if b := e.rdb.Load(); b != nil {
		if b.c == nil {
			return nil, errClosed
		}
		return b.c, nil
	}
	// rueidis dials (and on a Cluster reads the slot map) here, each
	// dial bounded by Config.Timeout.
	rdb, err := rueidis.NewClient(e.target.options(e.cfg))
	if err != nil {
		return nil, fmt.Errorf("redis engine: %s: %w", clip(e.cfg.URL), err)
	}
	if e.target.Cluster && rdb.Mode() != rueidis.ClientModeCluster {
		rdb.Close()
		return nil, fmt.Errorf("redis engine: %s: not a Redis Cluster", clip(e.cfg.URL))
	}
	e.rdb.Store(&clientBox{c: rdb})
	return rdb, nil
}

var errClosed = errors.New("redis engine: closed")

// callContext bounds one Redis call by cfg.Timeout.
func (e *Engine) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.cfg.Timeout)
}

// callError wraps err from a call named op made under callContext(parent).
// When the engine's own timeout ran out, not the caller's context, the
// error says Redis did not answer and no longer wraps
// context.DeadlineExceeded: the hub then reports the engine unavailable
// instead of passing on a deadline the caller never set.
func (e *Engine) callError(parent context.Context, op string, err error) error {
	if parent.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		return fmt.Errorf("redis %s: no answer within %v", op, e.cfg.Timeout)
	}
	return fmt.Errorf("redis %s: %w", op, err)
}

// Keys of a channel: its meta hash, its history stream and its pub/sub
// channel, all in the hash slot of {channel}.
func (e *Engine) metaKey(ch string) string    { return e.cfg.Prefix + ":{" + ch + "}:m" }
func (e *Engine) historyKey(ch string) string { return e.cfg.Prefix + ":{" + ch + "}:h" }
func (e *Engine) pubsubName(ch string) string { return e.cfg.Prefix + ":{" + ch + "}" }

// channelOf is pubsubName reversed; ok is false for a name not of ours.
func (e *Engine) channelOf(name string) (string, bool) {
	p := e.cfg.Prefix + ":{"
	if len(name) < len(p)+2 || name[:len(p)] != p || name[len(name)-1] != '}' {
		return "", false
	}
	return name[len(p) : len(name)-1], true
}

// Publish implements hub.Engine: one publishScript call.
func (e *Engine) Publish(ctx context.Context, channel string, data json.RawMessage) (*hub.Publication, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	parent := ctx
	ctx, cancel := e.callContext(ctx)
	defer cancel()
	sharded := "0"
	if e.target.Cluster {
		sharded = "1"
	}
	start := time.Now()
	rdb, err := e.client()
	if err != nil {
		e.stats.observe(time.Since(start), err)
		return nil, err
	}
	res, err := publishScript.Exec(ctx, rdb,
		[]string{e.metaKey(channel), e.historyKey(channel)},
		[]string{string(data), newEpoch(), strconv.Itoa(e.cfg.HistorySize),
			strconv.FormatInt(e.cfg.HistoryTTL.Milliseconds(), 10),
			strconv.FormatInt(e.cfg.StateTTL.Milliseconds(), 10), e.pubsubName(channel), sharded},
	).ToArray()
	e.stats.observe(time.Since(start), err)
	if err != nil {
		return nil, e.callError(parent, "publish", err)
	}
	if len(res) != 3 {
		return nil, fmt.Errorf("redis publish: unexpected reply of %d items", len(res))
	}
	epoch, err0 := res[0].ToString()
	off, err1 := res[1].AsInt64()
	ms, err2 := res[2].AsInt64()
	if epoch == "" || err0 != nil || err1 != nil || err2 != nil || off < 1 {
		return nil, fmt.Errorf("redis publish: unexpected reply %v", res)
	}
	return hub.NewPublication(channel, epoch, uint64(off), ms, data), nil
}

// History implements hub.Engine: one historyScript call, which writes
// nothing, so reading a channel never creates a key.
func (e *Engine) History(ctx context.Context, channel string, q hub.HistoryQuery) (hub.StreamState, []*hub.Publication, error) {
	if err := ctx.Err(); err != nil {
		return hub.StreamState{}, nil, err
	}
	parent := ctx
	ctx, cancel := e.callContext(ctx)
	defer cancel()
	limit := q.Limit
	if limit < 0 {
		limit = -1
	}
	start := time.Now()
	rdb, err := e.client()
	if err != nil {
		e.stats.observe(time.Since(start), err)
		return hub.StreamState{}, nil, err
	}
	res, err := historyScript.Exec(ctx, rdb,
		[]string{e.metaKey(channel), e.historyKey(channel)},
		[]string{strconv.FormatUint(q.After, 10), strconv.Itoa(limit),
			strconv.FormatInt(e.cfg.HistoryTTL.Milliseconds(), 10)},
	).ToArray()
	e.stats.observe(time.Since(start), err)
	if err != nil {
		return hub.StreamState{}, nil, e.callError(parent, "history", err)
	}
	if len(res) < 3 || (len(res)-3)%3 != 0 {
		return hub.StreamState{}, nil, fmt.Errorf("redis history: unexpected reply of %d items", len(res))
	}
	epoch, _ := res[0].ToString()
	latest, _ := res[1].AsInt64()
	oldest, _ := res[2].AsInt64()
	st := hub.StreamState{Epoch: epoch, Latest: uint64(latest), Oldest: uint64(oldest)}
	var pubs []*hub.Publication
	if n := (len(res) - 3) / 3; n > 0 {
		pubs = make([]*hub.Publication, 0, n)
	}
	for i := 3; i+2 < len(res); i += 3 {
		id, _ := res[i].ToString()
		ts, _ := res[i+1].ToString()
		data, _ := res[i+2].ToString()
		off, err := offsetOfID(id)
		ms, err2 := strconv.ParseInt(ts, 10, 64)
		if err != nil || err2 != nil || data == "" {
			return hub.StreamState{}, nil, fmt.Errorf("redis history: bad entry %q", id)
		}
		if err := msg.CheckStored([]byte(data)); err != nil {
			// A damaged entry is left out: the offsets around it make the
			// reader's session announce a gap, never a poisoned frame.
			e.log.Error("redis engine: skipping a damaged history entry", "channel", channel, "offset", off, "err", err)
			continue
		}
		pubs = append(pubs, hub.NewPublication(channel, epoch, off, ms, json.RawMessage(data)))
	}
	return st, pubs, nil
}

// offsetOfID returns the offset of stream entry ID "offset-0".
func offsetOfID(id string) (uint64, error) {
	for i := 0; i < len(id); i++ {
		if id[i] == '-' {
			return strconv.ParseUint(id[:i], 10, 64)
		}
	}
	return 0, fmt.Errorf("stream ID %q", id)
}

// newEpoch returns 10 random characters of [a-z0-9].
func newEpoch() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b [10]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}
