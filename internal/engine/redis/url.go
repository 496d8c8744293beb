package redis

import (
	"crypto/tls"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// Target is where a parsed engine URL points.
type Target struct {
	Cluster  bool
	Addrs    []string // host:port, one for a single Redis
	DB       int      // always 0 on a Cluster
	Username string
	Password string
	TLS      bool
}

// ParseURL parses an engine URL:
//
//	redis://[user:pass@]host[:port][/db]        one Redis (port 6379, db 0 by default)
//	rediss://…                                  the same over TLS
//	redis+cluster://[user:pass@]h1:p1,h2:p2,…   a Redis Cluster: any of its nodes
//	rediss+cluster://…                          the same over TLS
//
// Query parameters are refused rather than ignored.
func ParseURL(raw string) (Target, error) {
	var t Target
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return t, fmt.Errorf("redis URL %q: no scheme", clip(raw))
	}
	switch scheme {
	case "redis":
	case "rediss":
		t.TLS = true
	case "redis+cluster":
		t.Cluster = true
	case "rediss+cluster":
		t.Cluster, t.TLS = true, true
	default:
		return t, fmt.Errorf("redis URL %q: scheme must be redis, rediss, redis+cluster or rediss+cluster", clip(raw))
	}
	if strings.ContainsAny(rest, "?#") {
		return t, fmt.Errorf("redis URL %q: query and fragment are not supported", clip(raw))
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		info := rest[:at]
		rest = rest[at+1:]
		user, pass, hasPass := strings.Cut(info, ":")
		var err error
		if t.Username, err = url.PathUnescape(user); err != nil {
			return t, fmt.Errorf("redis URL: user: %w", err)
		}
		if hasPass {
			if t.Password, err = url.PathUnescape(pass); err != nil {
				return t, errors.New("redis URL: password is not valid percent-encoding")
			}
		} else {
			// redis://secret@host: a password alone, as redis-cli reads it.
			t.Username, t.Password = "", t.Username
		}
	}
	hosts, path, _ := strings.Cut(rest, "/")
	if path != "" {
		db, err := strconv.Atoi(path)
		if err != nil || db < 0 || db > 1<<20 {
			return t, fmt.Errorf("redis URL %q: database %q is not a number", clip(raw), clip(path))
		}
		if t.Cluster && db != 0 {
			return t, fmt.Errorf("redis URL %q: a Redis Cluster has only database 0", clip(raw))
		}
		t.DB = db
	}
	for h := range strings.SplitSeq(hosts, ",") {
		if h == "" {
			return t, fmt.Errorf("redis URL %q: empty host", clip(raw))
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(strings.Trim(h, "[]"), "6379")
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil || host == "" || strings.ContainsAny(host, " /\\") {
			return t, fmt.Errorf("redis URL %q: bad host %q", clip(raw), clip(h))
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return t, fmt.Errorf("redis URL %q: bad port %q", clip(raw), clip(port))
		}
		t.Addrs = append(t.Addrs, h)
	}
	if !t.Cluster && len(t.Addrs) != 1 {
		return t, fmt.Errorf("redis URL %q: several hosts need redis+cluster://", clip(raw))
	}
	return t, nil
}

// options returns the rueidis options for t. Every client call is bounded
// by the caller's ctx (callContext), dialing by cfg.Timeout; nothing is
// retried (a publish retried after its reply was lost would be stored
// twice); client-side caching is off (the engine reads nothing twice).
func (t Target) options(cfg Config) rueidis.ClientOption {
	o := rueidis.ClientOption{
		InitAddress: t.Addrs, Username: t.Username, Password: t.Password, SelectDB: t.DB,
		Dialer:       net.Dialer{Timeout: cfg.Timeout},
		DisableRetry: true, DisableCache: true,
		ForceSingleClient: !t.Cluster,
		ClientSetInfo:     rueidis.DisableClientSetInfo,
	}
	if t.TLS {
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if host, _, err := net.SplitHostPort(t.Addrs[0]); err == nil && !t.Cluster {
			o.TLSConfig.ServerName = host
		}
	}
	if cfg.PoolSize > 0 {
		// 2^PipelineMultiplex connections per node: the largest power of
		// two not above PoolSize, at most rueidis's maximum.
		o.PipelineMultiplex = min(bits.Len(uint(cfg.PoolSize))-1, rueidis.MaxPipelineMultiplex)
	}
	return o
}

// clip shortens s for an error message and hides any credentials in it.
func clip(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		if at := strings.LastIndexByte(s, '@'); at > i {
			s = s[:i+3] + "***" + s[at:]
		}
	}
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}
