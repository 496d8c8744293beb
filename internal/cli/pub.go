package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/duplexhq/duplex/msg"
)

func runPub(ctx context.Context, stdio Stdio, args []string) error {
	fs := newFlagSet(stdio, "pub", "[flags] CHANNEL [JSON]\n\n"+
		"Publishes JSON, or each line of standard input (blank lines skipped), and prints\n"+
		"each assigned position as channel:epoch:offset. With --transport ws (and with\n"+
		"auto while WebSocket works) all of it goes over one WebSocket; otherwise each\n"+
		"message is a POST /v1/channels/CHANNEL/messages.")
	cf := addConnFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		fs.Usage()
		return errUsage
	}
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
