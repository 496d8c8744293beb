package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/duplexhq/duplex/msg"
)

func runPub(ctx context.Context, stdio Stdio, args []string) error {
	fs := newFlagSet(stdio, "pub", "[flags] CHANNEL [JSON]\n\nPublishes JSON, or each line of standard input, and prints each assigned offset.")
	hubURL := fs.String("url", envOr("DUPLEX_URL", "http://127.0.0.1:8080"), "hub URL (env DUPLEX_URL)")
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
	endpoint := strings.TrimRight(*hubURL, "/") + "/v1/channels/" + url.PathEscape(channel) + "/messages"
	hc := &http.Client{Timeout: 30 * time.Second}
	publish := func(data []byte) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(data))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusCreated {
			var eb msg.ErrorBody
			if json.Unmarshal(body, &eb) == nil && eb.Error != nil {
				return eb.Error
			}
			return fmt.Errorf("hub answered %s", resp.Status)
		}
		var p msg.Published
		if err := json.Unmarshal(body, &p); err != nil {
			return fmt.Errorf("decode reply: %w", err)
		}
		fmt.Fprintf(stdio.Out, "%s:%s:%d\n", p.Channel, p.Epoch, p.Offset)
		return nil
	}
	if fs.NArg() == 2 {
		return publish([]byte(fs.Arg(1)))
	}
	sc := bufio.NewScanner(stdio.In)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if err := publish(line); err != nil {
			return err
		}
	}
	return sc.Err()
}
