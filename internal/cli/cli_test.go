package cli

import (
	"context"
	"net"
	"strings"
	"testing"
)

// TestHelpGoesToStdout: help that was asked for is the command's output:
// stdout, exit 0, nothing on stderr; `duplex help CMD` is `duplex CMD
// --help`. Usage after a mistake stays on stderr with exit 2.
func TestHelpGoesToStdout(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--help"}, "commands:"},
		{[]string{"-h"}, "commands:"},
		{[]string{"help"}, "commands:"},
		{[]string{"help", "serve"}, "usage: duplex serve"},
		{[]string{"help", "sub"}, "usage: duplex sub"},
		{[]string{"serve", "--help"}, "-listen"},
		{[]string{"pub", "-h"}, "usage: duplex pub"},
		{[]string{"token", "--help"}, "-subscribe"},
		{[]string{"proxy", "--help"}, "usage: duplex proxy"},
		{[]string{"bench", "--help"}, "usage: duplex bench"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runMain(t, ctx, "", tc.args...)
			if code != 0 || !strings.Contains(out, tc.want) || errOut != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 0, %q on stdout, nothing on stderr", code, out, errOut, tc.want)
			}
		})
	}
	for _, args := range [][]string{{}, {"serve", "--nope"}, {"sub"}} {
		code, out, errOut := runMain(t, ctx, "", args...)
		if code != 2 || out != "" || !strings.Contains(errOut, "usage: duplex") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and the usage on stderr only", args, code, out, errOut)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}} {
		code, out, errOut := runMain(t, context.Background(), "", args...)
		if code != 0 || out != "duplex "+Version+"\n" || errOut != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
}

// TestUnknownCommandSuggests: a typo gets the nearest command; a name far
// from every command gets no guess.
func TestUnknownCommandSuggests(t *testing.T) {
	for _, tc := range []struct{ typed, want string }{
		{"serv", "serve"}, {"srve", "serve"}, {"sever", "serve"}, {"Serve", "serve"},
		{"pbu", "pub"}, {"sbu", "sub"}, {"toekn", "token"}, {"proxxy", "proxy"},
		{"bnech", "bench"}, {"verison", "version"},
		{"frobnicate", ""}, {"x", ""}, {"publish-everything", ""}, {strings.Repeat("serve", 100), ""},
	} {
		code, out, errOut := runMain(t, context.Background(), "", tc.typed)
		hint := "did you mean '" + tc.want + "'?"
		switch {
		case code != 2 || out != "" || !strings.Contains(errOut, `unknown command "`+tc.typed+`"`) || !strings.Contains(errOut, "commands:"):
			t.Errorf("%q: exit %d, stdout %q, stderr %q", tc.typed, code, out, errOut)
		case tc.want != "" && !strings.Contains(errOut, hint):
			t.Errorf("%q: stderr %q lacks %q", tc.typed, errOut, hint)
		case tc.want == "" && strings.Contains(errOut, "did you mean"):
			t.Errorf("%q: a far-fetched guess: %q", tc.typed, errOut)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{
		{"", "", 0}, {"", "abc", 3}, {"abc", "", 3}, {"serve", "serve", 0},
		{"serv", "serve", 1}, {"srve", "serve", 1}, {"sevre", "serve", 1}, {"pbu", "pub", 1}, {"ca", "abc", 3},
		{"kitten", "sitting", 3}, {"flaw", "lawn", 2},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.d)
		}
		if got := editDistance(tc.b, tc.a); got != tc.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d (symmetry)", tc.b, tc.a, got, tc.d)
		}
	}
}

// TestMissingChannel: pub and sub without a CHANNEL say so first.
func TestMissingChannel(t *testing.T) {
	for _, args := range [][]string{{"pub"}, {"sub"}, {"pub", "--transport", "ws"}, {"sub", "--count", "1"}} {
		code, out, errOut := runMain(t, context.Background(), "", args...)
		first, _, _ := strings.Cut(errOut, "\n")
		if code != 2 || out != "" || first != "duplex "+args[0]+": missing CHANNEL" || !strings.Contains(errOut, "usage: duplex "+args[0]) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
}

// closedPortURL returns the URL of a 127.0.0.1 port that was just free:
// connecting to it is refused.
func closedPortURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// TestConnectionRefusedHint: with no hub at the URL, pub and sub say what
// is likely missing.
func TestConnectionRefusedHint(t *testing.T) {
	url := closedPortURL(t)
	hint := "(is `duplex serve` running at " + url + "?)"
	for _, args := range [][]string{
		{"pub", "--url", url, "--proxy", "direct", "chat", "1"},
		{"pub", "--url", url, "--proxy", "direct", "--transport", "http", "chat", "1"},
		{"sub", "--url", url, "--proxy", "direct", "chat"},
		{"sub", "--url", url, "--proxy", "direct", "--transport", "ws", "chat"},
	} {
		code, _, errOut := runMain(t, context.Background(), "", args...)
		if code != 1 || !strings.Contains(errOut, "connection refused") || !strings.Contains(errOut, hint) {
			t.Errorf("%q: exit %d, stderr %q; want exit 1 and %q", args, code, errOut, hint)
		}
	}
}

func TestExplainRefusedLeavesOtherErrors(t *testing.T) {
	err := context.DeadlineExceeded
	if got := explainRefused(err, "http://x"); got != err {
		t.Fatalf("explainRefused changed %v into %v", err, got)
	}
	if explainRefused(nil, "http://x") != nil {
		t.Fatal("explainRefused(nil) is not nil")
	}
}

// TestTokenWithoutScopesWarns: the token is still printed, on stdout
// alone, and the warning goes to stderr; with a scope there is no warning.
func TestTokenWithoutScopesWarns(t *testing.T) {
	ctx := context.Background()
	code, out, errOut := runMain(t, ctx, "", "token", "--secret", "s", "--sub", "alice")
	if code != 0 || strings.Count(out, ".") != 2 || strings.Count(out, "\n") != 1 || !strings.Contains(errOut, "warning: no --subscribe or --publish") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, scope := range []string{"--subscribe", "--publish"} {
		code, out, errOut = runMain(t, ctx, "", "token", "--secret", "s", scope, "chat")
		if code != 0 || strings.Count(out, ".") != 2 || errOut != "" {
			t.Fatalf("%s: exit %d, stdout %q, stderr %q", scope, code, out, errOut)
		}
	}
}
