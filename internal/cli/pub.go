package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"

	"github.com/duplexhq/duplex/msg"
)

// pubTransportUsage replaces the shared --transport help for pub: only
// WebSocket and HTTP can carry a publication.
const pubTransportUsage = "ws (one WebSocket for every message), http (one POST each) or auto: ws while WebSocket works (env DUPLEX_TRANSPORT; sse, stream and poll there mean http)"

func runPub(ctx context.Context, stdio Stdio, args []string) (err error) {
	fs := newFlagSet(stdio, "pub", "[flags] CHANNEL [JSON]\n\n"+
		"Publishes JSON, or each line of standard input (blank lines skipped), and prints\n"+
		"each assigned position as channel:epoch:offset. With --transport ws (and with\n"+
		"auto while WebSocket works) all of it goes over one WebSocket; with http each\n"+
		"message is a POST /v1/channels/CHANNEL/messages.")
	cf := addConnFlags(fs)
	fs.Lookup("transport").Usage = pubTransportUsage
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return missingArg(fs, stdio, "CHANNEL")
	}
	if fs.NArg() > 2 {
		fs.Usage()
		return errUsage
	}
	if err := pubTransport(fs, cf); err != nil {
		return err
	}
	defer func() { err = explainRefused(err, *cf.url) }()
	channel := fs.Arg(0)
	if !msg.ValidChannel(channel) {
		return fmt.Errorf("invalid channel name %q", channel)
	}
	c, err := cf.dial(ctx, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	publish := func(data []byte) error {
		if !json.Valid(data) {
			return fmt.Errorf("not valid JSON: %.80q", data)
		}
		p, err := c.Publish(ctx, channel, data)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdio.Out, "%s:%s:%d\n", p.Channel, p.Epoch, p.Offset)
		return err
	}
	if fs.NArg() == 2 {
		return publish([]byte(fs.Arg(1)))
	}
	sc := bufio.NewScanner(stdio.In)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if err := publish(line); err != nil {
			return fmt.Errorf("line %d: %w", lineNo, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read standard input: %w", err)
	}
	return nil
}

// pubTransport checks --transport for pub and maps it to the client's
// transport that publishes the same way. SSE, NDJSON and long polling are
// ways to receive: named on the command line they are refused, since the
// message would not go over them; from DUPLEX_TRANSPORT, which pub and sub
// share, they mean http.
func pubTransport(fs *flag.FlagSet, cf connFlags) error {
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "transport" })
	switch *cf.transport {
	case "ws", "auto":
	case "http":
		// The client's sse transport dials nothing and publishes with POST.
		*cf.transport = "sse"
	case "sse", "stream", "poll":
		if explicit {
			return fmt.Errorf("--transport %s: %s is a way to receive; a publication goes over WebSocket (--transport ws) or an HTTP POST (--transport http)", *cf.transport, *cf.transport)
		}
		*cf.transport = "sse"
	default:
		return fmt.Errorf("--transport %q: unknown transport: want ws, http or auto", *cf.transport)
	}
	return nil
}
