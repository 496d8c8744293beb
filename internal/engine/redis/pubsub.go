package redis

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/redis/rueidis"
)

// psConn is one pub/sub connection of a shard: a rueidis dedicated
// connection (publish and history calls never share it) whose pushes
// rueidis hands to the shard's hooks. SUBSCRIBE and UNSUBSCRIBE wait for
// their reply, which arrives on the goroutine that runs the hooks, so they
// are not sent by the caller of Subscribe (which holds shard.mu, and the
// hooks take it) but by the connection's sender goroutine, in the order
// they were queued: the order of shard.pending.
//
// Lock order: shard.mu before psConn.mu.
type psConn struct {
	s      *shard
	d      rueidis.DedicatedClient
	closed <-chan error // from SetPubSubHooks: one error, then closed

	mu   sync.Mutex // guards cmds
	cmds []psCmd
	wake chan struct{} // cap 1: cmds has something
	done chan struct{} // closed when the connection ends; stops the sender
	once sync.Once     // closes done and d

	// worked is set once Redis has confirmed or delivered anything: the
	// next reconnect starts over with a short backoff.
	worked atomic.Bool
}

// psCmd is a SUBSCRIBE (sub) or UNSUBSCRIBE of names, sharded on a Cluster.
type psCmd struct {
	sub   bool
	names []string
}

// connect makes a new connection and subscribes every channel of the shard
// on it. Channels that had been confirmed before are confirmed again on it,
// and then reported lost (confirmed). It returns nil, nil once stopped.
func (s *shard) connect() (*psConn, error) {
	rdb, err := s.e.client()
	if err != nil {
		return nil, err
	}
	d, _ := rdb.Dedicate()
	c := &psConn{s: s, d: d, wake: make(chan struct{}, 1), done: make(chan struct{})}
	c.closed = d.SetPubSubHooks(rueidis.PubSubHooks{
		OnMessage: func(m rueidis.PubSubMessage) {
			c.worked.Store(true)
			s.message(m)
		},
		OnSubscription: func(m rueidis.PubSubSubscription) {
			c.worked.Store(true)
			s.confirmed(m)
		},
	})
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		c.close()
		return nil, nil
	}
	s.pending = map[string][]*chanState{}
	names := make([]string, 0, len(s.chans))
	for ch, st := range s.chans {
		s.pending[ch] = []*chanState{st}
		names = append(names, s.e.pubsubName(ch))
	}
	// Subscribe and Unsubscribe calls from here on queue behind this
	// first subscription, which is sent below, before the sender starts.
	s.conn = c
	s.mu.Unlock()
	ctx, cancel := s.e.callContext(context.Background())
	defer cancel()
	if len(names) > 0 {
		// On a Cluster, the first command binds the dedicated connection
		// to the master of its slot, the shard's.
		err = d.Do(ctx, c.command(true, names)).Error()
	} else {
		err = d.Do(ctx, d.B().Ping().Build()).Error()
	}
	if err != nil {
		c.close()
		<-c.closed // hooks done: nothing more from this connection
		s.mu.Lock()
		if s.conn == c {
			s.conn = nil
		}
		s.mu.Unlock()
		return nil, err
	}
	s.e.wg.Go(c.send)
	return c, nil
}

// command builds one SUBSCRIBE or UNSUBSCRIBE (SSUBSCRIBE, SUNSUBSCRIBE on
// a Cluster).
func (c *psConn) command(sub bool, names []string) rueidis.Completed {
	b := c.d.B()
	switch {
	case sub && c.s.e.target.Cluster:
		return b.Ssubscribe().Channel(names...).Build()
	case sub:
		return b.Subscribe().Channel(names...).Build()
	case c.s.e.target.Cluster:
		return b.Sunsubscribe().Channel(names...).Build()
	default:
		return b.Unsubscribe().Channel(names...).Build()
	}
}

// queue asks the sender to send a SUBSCRIBE or UNSUBSCRIBE of name. It
// does not wait. Called with shard.mu held, which orders it with
// shard.pending.
func (c *psConn) queue(sub bool, name string) {
	c.mu.Lock()
	c.cmds = append(c.cmds, psCmd{sub: sub, names: []string{name}})
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// send is the connection's sender goroutine: it sends what queue queued,
// in order, each under Config.Timeout. A failed call means a broken
// connection, which it closes for run to repair.
func (c *psConn) send() {
	for {
		select {
		case <-c.done:
			return
		case <-c.wake:
		}
		c.mu.Lock()
		cmds := c.cmds
		c.cmds = nil
		c.mu.Unlock()
		for _, cmd := range cmds {
			ctx, cancel := c.s.e.callContext(context.Background())
			err := c.d.Do(ctx, c.command(cmd.sub, cmd.names)).Error()
			cancel()
			if err != nil {
				c.s.e.log.Debug("redis engine: pub/sub write failed; reconnecting", "err", err)
				c.close()
				return
			}
		}
	}
}

// wait returns when the connection has failed, with why, or when quit is
// closed (the shard's stop closes the connection). Either way rueidis calls
// no hook of it after.
func (c *psConn) wait(quit <-chan struct{}) error {
	var err error
	select {
	case err = <-c.closed:
	case <-quit:
		c.close()
	}
	for range c.closed { // drain: closed once the hooks are done
	}
	c.close()
	if err == nil {
		err = errors.New("pub/sub connection closed")
	}
	return err
}

// close ends the connection (once) and its sender.
func (c *psConn) close() {
	c.once.Do(func() {
		close(c.done)
		c.d.Close()
	})
}
