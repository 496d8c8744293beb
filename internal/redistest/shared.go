package redistest

import (
	"errors"
	"net"
	"os"
	"strconv"
)

// StartProcess starts a redis-server on a free loopback port, like Start,
// for a caller that outlives any one test: a test binary's shared server
// (see hubtest.Main). It has no test to report to, so only Addr, URL, Do
// and Close may be used on it; the caller must call Close.
func StartProcess(opts *Options) (*Server, error) {
	if opts == nil {
		opts = &Options{}
	}
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, opts: *opts}
	for range 5 {
		s.Port, err = freePort(opts.Cluster)
		if err != nil {
			continue
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
		if err = s.launch(); err == nil {
			return s, nil
		}
	}
	os.RemoveAll(dir)
	return nil, errors.Join(errors.New("redistest: start redis-server"), err)
}

// Close kills a server from StartProcess by its PID, waits for it and
// removes its directory.
func (s *Server) Close() {
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
	s.Kill()
	os.RemoveAll(s.dir)
}
