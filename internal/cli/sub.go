package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/duplexhq/duplex/client"
	"github.com/duplexhq/duplex/msg"
)

// connFlags are the connection flags duplex sub and duplex pub share.
type connFlags struct {
	url       *string
	transport *string
	proxy     *string
	token     *string
	ca        *string
}

func addConnFlags(fs *flag.FlagSet) connFlags {
	return connFlags{
		url:       fs.String("url", envOr("DUPLEX_URL", "http://127.0.0.1:8080"), "hub `URL` (env DUPLEX_URL)"),
		transport: fs.String("transport", envOr("DUPLEX_TRANSPORT", "auto"), "auto, ws, sse, stream or poll (env DUPLEX_TRANSPORT)"),
		proxy:     fs.String("proxy", "", "proxy `URL`: http://, https://, socks4://, socks4a://, socks5://, socks5h:// (user:pass@ allowed); \"direct\" for none; empty: HTTP_PROXY/HTTPS_PROXY/ALL_PROXY/NO_PROXY"),
		token:     fs.String("token", envOr("DUPLEX_TOKEN", ""), "access token, sent as Authorization: Bearer (env DUPLEX_TOKEN)"),
		ca:        fs.String("ca", envOr("DUPLEX_CA", ""), "PEM `file` of the CA (or self-signed certificate) to trust for an https:// or wss:// hub, instead of the system's (env DUPLEX_CA)"),
	}
}

// dial opens a client with the flags' settings. logf, if not nil, hears
// about reconnects.
func (f connFlags) dial(ctx context.Context, logf func(format string, args ...any)) (*client.Client, error) {
	t, err := client.ParseTransport(*f.transport)
	if err != nil {
		return nil, err
	}
	opts := &client.DialOptions{Transport: t, Proxy: *f.proxy, Token: *f.token}
	if opts.TLSConfig, err = trustCA(*f.ca); err != nil {
		return nil, err
	}
	if logf != nil {
		opts.OnDisconnect = func(t client.Transport, err error) {
			logf("connection (%s) lost: %v", t, explainRefused(err, *f.url))
		}
	}
	return client.Dial(ctx, *f.url, opts)
}

func runSub(ctx context.Context, stdio Stdio, args []string) (err error) {
	fs := newFlagSet(stdio, "sub", "[flags] CHANNEL...\n\n"+
		"Prints each message (and each gap notice) as one JSON object a line on standard\n"+
		"output. On exit (Ctrl-C, SIGTERM, --count reached, or an error) it prints\n"+
		"\"cursor: <cursor>\" on standard error: pass it to --cursor to resume without\n"+
		"loss or duplicate. With --presence it also prints each channel's members once\n"+
		"subscribed ({\"type\":\"presence\",\"channel\",\"members\"}), then every join and\n"+
		"leave ({\"type\":\"join\"|\"leave\",...}), which --count does not count.")
	cf := addConnFlags(fs)
	cursorText := fs.String("cursor", "", "resume after this `cursor` (channel:epoch:offset,...); channels without an entry start now")
	count := fs.Int("count", 0, "exit after this many messages (0: run until interrupted)")
	quiet := fs.Bool("quiet", false, "do not report reconnects on standard error")
	presence := fs.Bool("presence", false, "print the channels' members, then their joins and leaves (the channels need presence on the hub: its --presence)")
	info := fs.String("info", "", "small JSON `value` this subscriber shows in the channels' presence")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return missingArg(fs, stdio, "CHANNEL")
	}
	defer func() { err = explainRefused(err, *cf.url) }()
	channels := fs.Args()
	for _, ch := range channels {
		if !msg.ValidChannel(ch) {
			return fmt.Errorf("invalid channel name %q", ch)
		}
	}
	cur, err := msg.ParseCursor(*cursorText)
	if err != nil {
		return fmt.Errorf("--cursor: %w", err)
	}
	if *info != "" && !json.Valid([]byte(*info)) {
		return fmt.Errorf("--info: not JSON: %q", *info)
	}
	var errMu sync.Mutex // the reconnect log and the final lines share stdio.Err
	logf := func(format string, args ...any) {
		errMu.Lock()
		defer errMu.Unlock()
		fmt.Fprintf(stdio.Err, "duplex sub: "+format+"\n", args...)
	}
	var reconnectLog func(string, ...any)
	if !*quiet {
		reconnectLog = logf
	}
	c, err := cf.dial(ctx, reconnectLog)
	if err != nil {
		return err
	}
	defer c.Close()

	// Until the subscription exists, the cursor to resume from is the one
	// given.
	resume := func() msg.Cursor { return cur }
	defer func() {
		errMu.Lock()
		fmt.Fprintf(stdio.Err, "cursor: %s\n", resume())
		errMu.Unlock()
	}()
	opts := &client.SubscribeOptions{Cursor: cur, JoinLeave: *presence}
	if *info != "" {
		opts.Info = json.RawMessage(*info)
	}
	sub, err := c.Subscribe(ctx, channels, opts)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil // interrupted while connecting
		}
		return err
	}
	defer sub.Close()
	if !*quiet {
		logf("subscribed to %s over %s", strings.Join(channels, ", "), sub.Transport())
	}
	resume = func() msg.Cursor {
		// Channels with no entry yet keep the entry given, if any.
		out := cur.Clone()
		for ch, p := range sub.Cursor() {
			out[ch] = p
		}
		return out
	}

	var line []byte
	if *presence {
		if err := printMembers(ctx, c, channels, stdio.Out); err != nil {
			return err
		}
	}
	n := 0
	for *count == 0 || n < *count {
		ev, err := sub.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil // Ctrl-C, SIGTERM
			}
			return err
		}
		line = ev.AppendJSON(line[:0])
		line = append(line, '\n')
		if _, err := stdio.Out.Write(line); err != nil {
			if errors.Is(err, os.ErrClosed) || strings.Contains(err.Error(), "broken pipe") {
				return nil // the reader went away: not an error of ours
			}
			return fmt.Errorf("write: %w", err)
		}
		if ev.Message != nil {
			n++
		}
	}
	return nil
}

// printMembers prints each channel's members, one line a channel:
// {"type":"presence","channel":...,"members":[...]}.
func printMembers(ctx context.Context, c *client.Client, channels []string, out io.Writer) error {
	for _, ch := range channels {
		l, err := c.Presence(ctx, ch)
		if err != nil {
			return err
		}
		b, err := json.Marshal(struct {
			Type string `json:"type"`
			msg.PresenceList
		}{"presence", *l})
		if err != nil {
			return err
		}
		if _, err := out.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
	return nil
}
