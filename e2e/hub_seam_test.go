package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/msg"
)

// TestSeamOverSockets: a reader resumes from offset K over the NDJSON
// stream while HTTP publishers run; it must read exactly K+1..N in order,
// every round.
func TestSeamOverSockets(t *testing.T) {
	h := hubtest.Start(t, nil)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer hc.CloseIdleConnections()
	const rounds, before, during = 40, 20, 60
	for round := range rounds {
		channel := "seam" + strconv.Itoa(round)
		var epoch string
		for i := 1; i <= before; i++ {
			epoch = postMessage(t, hc, h.URL, channel, i).Epoch
		}
		k := round % before
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := before + 1; i <= before+during; i++ {
				postMessage(t, hc, h.URL, channel, i)
			}
		})
		got := readStream(t, hc, fmt.Sprintf("%s/v1/stream?channel=%s&cursor=%s:%s:%d", h.URL, channel, channel, epoch, k), before+during)
		wg.Wait()
		if len(got) != before+during-k {
			t.Fatalf("round %d: got %d messages from cursor %d, want %d (first %v)", round, len(got), k, before+during-k, got[:min(5, len(got))])
		}
		for i, off := range got {
			if off != uint64(k+1+i) {
				t.Fatalf("round %d: message #%d has offset %d, want %d (loss, duplicate or disorder)", round, i, off, k+1+i)
			}
		}
	}
}

func postMessage(t *testing.T, hc *http.Client, base, channel string, n int) msg.Published {
	t.Helper()
	resp, err := hc.Post(base+"/v1/channels/"+channel+"/messages", "application/json", bytes.NewReader([]byte(strconv.Itoa(n))))
	if err != nil {
		t.Error(err)
		return msg.Published{}
	}
	defer resp.Body.Close()
	var p msg.Published
	if resp.StatusCode != 201 || json.NewDecoder(resp.Body).Decode(&p) != nil {
		t.Errorf("publish %d: status %d", n, resp.StatusCode)
	}
	return p
}

// readStream reads NDJSON from url until it has seen offset last, and
// returns the offsets of the messages read. Gap notices fail the test.
func readStream(t *testing.T, hc *http.Client, url string, last int) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	var got []uint64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var line struct {
			Type   string `json:"type"`
			Offset uint64 `json:"offset"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("bad line %q: %v", sc.Text(), err)
		}
		switch line.Type {
		case "message":
			got = append(got, line.Offset)
			if line.Offset == uint64(last) {
				return got
			}
		case "gap":
			t.Fatalf("unexpected gap: %s", sc.Text())
		}
	}
	t.Fatalf("stream ended after %d messages: %v", len(got), sc.Err())
	return nil
}
