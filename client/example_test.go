package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"

	"github.com/duplexhq/duplex/client"
	"github.com/duplexhq/duplex/msg"
)

// Dial checks the options and picks the proxy. With the sse, stream and
// poll transports it makes no request until the client is used.
func ExampleDial() {
	ctx := context.Background()
	c, err := client.Dial(ctx, "ws://127.0.0.1:8080/", &client.DialOptions{
		Transport: client.SSE,
		Proxy:     "socks5h://alice:secret@127.0.0.1:1080",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Println(c.URL(), c.Transport(), c.Proxy())
	// Output: http://127.0.0.1:8080 sse socks5h://alice:xxxxx@127.0.0.1:1080
}

// Subscribe, print every message and gap notice until Ctrl-C, then print
// the cursor to resume from next time. Needs a hub (duplex serve).
func ExampleClient_Subscribe() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	c, err := client.Dial(ctx, "http://127.0.0.1:8080", nil) // Auto: ws, then sse, then poll
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// A cursor from an earlier run, e.g. "chat:k3v9x2ab1c:42"; channels
	// without an entry start at "now".
	cur, err := msg.ParseCursor(os.Getenv("CURSOR"))
	if err != nil {
		log.Fatal(err)
	}
	sub, err := c.Subscribe(ctx, []string{"chat", "news"}, &client.SubscribeOptions{Cursor: cur})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			break // ctx ended (Ctrl-C), or the hub refused us for good
		}
		switch {
		case ev.Message != nil:
			fmt.Printf("%s #%d: %s\n", ev.Message.Channel, ev.Message.Offset, ev.Message.Data)
		case ev.Gap != nil:
			fmt.Printf("%s: messages lost; next is #%d of epoch %s\n", ev.Gap.Channel, ev.Gap.Next, ev.Gap.Epoch)
		}
	}
	fmt.Println("resume with CURSOR=" + sub.Cursor().String())
}

// Publish a JSON value. Over WebSocket it goes over the client's one
// WebSocket; over the other transports it is an HTTP POST. Needs a hub.
func ExampleClient_Publish() {
	ctx := context.Background()
	c, err := client.Dial(ctx, "http://127.0.0.1:8080", &client.DialOptions{Transport: client.WebSocket, Token: os.Getenv("DUPLEX_TOKEN")})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	data, _ := json.Marshal(map[string]string{"text": "hi"})
	p, err := c.Publish(ctx, "chat", data)
	if err != nil {
		var se *client.StatusError
		if errors.As(err, &se) {
			log.Fatalf("hub refused (%d): %v", se.StatusCode, msg.CodeOf(err))
		}
		log.Fatal(err)
	}
	fmt.Printf("published as %s:%s:%d\n", p.Channel, p.Epoch, p.Offset)
}

// Read a channel's history page by page. Needs a hub.
func ExampleClient_History() {
	ctx := context.Background()
	c, err := client.Dial(ctx, "http://127.0.0.1:8080", &client.DialOptions{Transport: client.Poll})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	after := uint64(0)
	for {
		page, err := c.History(ctx, "chat", after, 100)
		if err != nil {
			log.Fatal(err)
		}
		for _, m := range page.Messages {
			fmt.Printf("#%d %s\n", m.Offset, m.Data)
		}
		if len(page.Messages) == 0 || page.Next >= page.Latest {
			break
		}
		after = page.Next
	}
}

func ExampleParseTransport() {
	for _, s := range []string{"", "websocket", "poll", "pigeon"} {
		t, err := client.ParseTransport(s)
		fmt.Println(t, err)
	}
	// Output:
	// auto <nil>
	// ws <nil>
	// poll <nil>
	//  unknown transport "pigeon" (want auto, ws, sse, stream or poll)
}

// Events print in their wire form, one JSON object each: what duplex sub
// writes as NDJSON.
func ExampleEvent_AppendJSON() {
	evs := []client.Event{
		{Message: &msg.Envelope{Type: "message", Channel: "chat", Epoch: "k3v9x2", Offset: 42, Time: 1763980000123, Data: []byte(`{"text":"hi"}`)}},
		{Gap: &msg.Gap{Type: "gap", Channel: "chat", Epoch: "k3v9x2", Next: 57}},
	}
	for _, ev := range evs {
		fmt.Println(string(ev.AppendJSON(nil)))
	}
	// Output:
	// {"type":"message","channel":"chat","epoch":"k3v9x2","offset":42,"time":1763980000123,"data":{"text":"hi"}}
	// {"type":"gap","channel":"chat","epoch":"k3v9x2","next":57}
}
