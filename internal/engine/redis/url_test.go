package redis

import (
	"slices"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	t.Parallel()
	good := []struct {
		in   string
		want Target
	}{
		{"redis://127.0.0.1:6379/0", Target{Addrs: []string{"127.0.0.1:6379"}}},
		{"redis://localhost", Target{Addrs: []string{"localhost:6379"}}},
		{"redis://h:7000/3", Target{Addrs: []string{"h:7000"}, DB: 3}},
		{"rediss://u:p%40ss@h:6380/1", Target{Addrs: []string{"h:6380"}, DB: 1, Username: "u", Password: "p@ss", TLS: true}},
		{"redis://secret@h", Target{Addrs: []string{"h:6379"}, Password: "secret"}},
		{"redis://[::1]:6379", Target{Addrs: []string{"[::1]:6379"}}},
		{"redis+cluster://a:1,b:2,c", Target{Cluster: true, Addrs: []string{"a:1", "b:2", "c:6379"}}},
		{"rediss+cluster://:pw@a:1/0", Target{Cluster: true, TLS: true, Addrs: []string{"a:1"}, Password: "pw"}},
	}
	for _, g := range good {
		got, err := ParseURL(g.in)
		if err != nil || got.Cluster != g.want.Cluster || got.TLS != g.want.TLS || got.DB != g.want.DB ||
			got.Username != g.want.Username || got.Password != g.want.Password || !slices.Equal(got.Addrs, g.want.Addrs) {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v", g.in, got, err, g.want)
		}
	}
	for _, in := range []string{
		"", "memory", "http://h", "redis://", "redis://h:0", "redis://h:99999", "redis://h:x",
		"redis://h/x", "redis://h/-1", "redis://a,b", "redis+cluster://a/2", "redis+cluster://a,,b",
		"redis://h?db=1", "redis://u:%zz@h",
	} {
		if _, err := ParseURL(in); err == nil {
			t.Errorf("ParseURL(%q) succeeded", in)
		}
	}
	// Errors never show a password.
	_, err := ParseURL("redis://u:topsecret@h:x")
	if err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Fatalf("error %v", err)
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"redis://127.0.0.1:6379/0", "rediss+cluster://u:p@a:1,b:2", "redis://[::1]", "redis://h?x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseURL(s)
		if err != nil {
			if strings.Contains(s, ":topsecret@") && strings.Contains(err.Error(), "topsecret") {
				t.Fatalf("error shows the password: %v", err)
			}
			return
		}
		if len(tg.Addrs) == 0 || (!tg.Cluster && len(tg.Addrs) != 1) || (tg.Cluster && tg.DB != 0) {
			t.Fatalf("ParseURL(%q) = %+v", s, tg)
		}
	})
}
