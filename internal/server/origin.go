package server

import (
	"net"
	"net/http"
	"net/url"
	"strings"
)

// originAllowed reports whether a browser at origin may use the hub: the
// configured list, or by default the hub's own origin and localhost.
func (s *Server) originAllowed(r *http.Request, origin string) bool {
	if origin == "" {
		return true // not a browser, or a same-origin GET
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if len(s.cfg.AllowedOrigins) > 0 {
		for _, o := range s.cfg.AllowedOrigins {
			if o == "*" || strings.EqualFold(strings.TrimRight(o, "/"), origin) {
				return true
			}
		}
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	switch host := u.Hostname(); host {
	case "localhost":
		return true
	default:
		ip := net.ParseIP(host)
		return ip != nil && ip.IsLoopback()
	}
}

// cors answers CORS preflights and sets CORS headers for allowed origins.
// It returns true when it has answered the request itself.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	allowed := s.originAllowed(r, origin)
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	if !allowed {
		if preflight {
			w.WriteHeader(http.StatusForbidden)
			return true
		}
		return false // no CORS headers: the browser withholds the response
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Set("Access-Control-Expose-Headers", "ETag, Retry-After, Location")
	if preflight {
		h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID, If-None-Match")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}
