package msg_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/duplexhq/duplex/msg"
)

func ExampleParseCommand() {
	cmd, err := msg.ParseCommand([]byte(`{"id":7,"type":"subscribe","channel":"chat","epoch":"k3v9x2","offset":41}`))
	fmt.Println(cmd.Type, cmd.Channel, *cmd.Epoch, *cmd.Offset, err)
	_, err = msg.ParseCommand([]byte(`{"id":8,"type":"publish","channel":"chat"}`))
	fmt.Println(err)
	_, err = msg.ParseCommand([]byte(`[1,2]`))
	fmt.Println(errors.Is(err, msg.ErrNotObject))
	// Output:
	// subscribe chat k3v9x2 41 <nil>
	// invalid_json: publish needs data
	// true
}

func ExamplePositionReply() {
	fmt.Println(string(msg.PositionReply([]byte(`7`), "chat", "k3v9x2", 42, 0, false)))
	fmt.Println(string(msg.PositionReply([]byte(`"p1"`), "chat", "k3v9x2", 43, 1763980000123, true)))
	fmt.Println(string(msg.PongReply([]byte(`9`))))
	fmt.Println(string(msg.OKReply([]byte(`10`))))
	// Output:
	// {"id":7,"type":"ok","channel":"chat","epoch":"k3v9x2","offset":42}
	// {"id":"p1","type":"ok","channel":"chat","epoch":"k3v9x2","offset":43,"time":1763980000123}
	// {"id":9,"type":"pong"}
	// {"id":10,"type":"ok"}
}

func ExampleErrorReply() {
	fmt.Println(string(msg.ErrorReply([]byte(`3`), msg.Errorf(msg.CodeForbidden, "the token does not allow %s on %q", "publish", "news"))))
	fmt.Println(string(msg.ErrorReply(nil, errors.New("not a protocol error"))))
	// Output:
	// {"id":3,"type":"error","code":"forbidden","message":"the token does not allow publish on \"news\""}
	// {"type":"error","code":"internal","message":"internal error"}
}

func ExampleHistoryPage() {
	envs := [][]byte{
		[]byte(`{"type":"message","channel":"chat","epoch":"k3v9x2","offset":5,"time":1,"data":1}`),
		[]byte(`{"type":"message","channel":"chat","epoch":"k3v9x2","offset":6,"time":2,"data":2}`),
	}
	p := msg.HistoryPage{Channel: "chat", Epoch: "k3v9x2", After: 4, Oldest: 5, Latest: 6}
	b, n := p.AppendMembers([]byte("{"), len(envs), func(i int) ([]byte, uint64) { return envs[i], uint64(5 + i) })
	fmt.Println(string(b)+"}", n)
	// Output:
	// {"channel":"chat","epoch":"k3v9x2","messages":[{"type":"message","channel":"chat","epoch":"k3v9x2","offset":5,"time":1,"data":1},{"type":"message","channel":"chat","epoch":"k3v9x2","offset":6,"time":2,"data":2}],"next":6,"oldest":5,"latest":6} 2
}

func ExampleCursor_AdvanceGap() {
	c := msg.Cursor{}
	c.AdvanceMessage("chat", "k3v9x2", 41)
	c.AdvanceGap("news", "k3v9x2", 57) // the next message of news is 57
	fmt.Println(c)
	// Output:
	// chat:k3v9x2:41,news:k3v9x2:56
}

func ExampleSSEDecoder() {
	stream := "retry: 1000\nid: chat:k3v9x2:0\n\n" +
		": heartbeat\n\n" +
		"id: chat:k3v9x2:1\nevent: message\ndata: {\"n\":1}\n\n"
	d := msg.NewSSEDecoder(strings.NewReader(stream), 0)
	for {
		ev, err := d.Next()
		if err == io.EOF {
			break
		}
		fmt.Printf("comment=%v type=%q id=%q data=%q retry=%d\n", ev.Comment, ev.Type, ev.ID, ev.Data, ev.Retry)
	}
	// Output:
	// comment=false type="" id="chat:k3v9x2:0" data="" retry=1000
	// comment=true type="" id="" data="heartbeat" retry=-1
	// comment=false type="message" id="chat:k3v9x2:1" data="{\"n\":1}" retry=-1
}

func ExampleNDJSONDecoder() {
	stream := `{"type":"heartbeat","cursor":"chat:k3v9x2:0"}` + "\r\n\n" +
		`{"type":"gap","channel":"chat","epoch":"k3v9x2","next":57}` + "\n" +
		`{"type":"mess`
	d := msg.NewNDJSONDecoder(strings.NewReader(stream), 0)
	for {
		line, err := d.Next()
		if err != nil {
			fmt.Println(err, errors.Is(err, msg.ErrTruncated))
			break
		}
		f, err := msg.ParseFrame(line)
		fmt.Println(f.Type, f.Cursor, f.Next, err)
	}
	// Output:
	// heartbeat chat:k3v9x2:0 0 <nil>
	// gap  57 <nil>
	// stream ended in the middle of a line or event: a line has no end true
}

func ExampleEnvelope_Validate() {
	e := msg.Envelope{Type: msg.TypeMessage, Channel: "chat", Epoch: "k3v9x2", Offset: 0, Data: []byte(`1`)}
	fmt.Println(e.Validate())
	e.Offset = 1
	fmt.Println(e.Validate())
	// Output:
	// invalid frame: envelope with offset 0
	// <nil>
}

func ExampleCommand() {
	offset := uint64(41)
	cmd := msg.Command{ID: []byte(`1`), Type: msg.CmdSubscribe, Channel: "chat", Offset: &offset}
	b, _ := json.Marshal(cmd)
	fmt.Println(string(b))
	// Output:
	// {"id":1,"type":"subscribe","channel":"chat","offset":41}
}

func ExampleParseFrame() {
	f, err := msg.ParseFrame([]byte(`{"type":"message","channel":"chat","epoch":"k3v9x2","offset":7,"time":1,"data":{"n":7}}`))
	fmt.Println(f.Type, f.Channel, f.Offset, string(f.Data), err)
	_, err = msg.ParseFrame([]byte(`{"type":"gap","channel":"chat","epoch":"k3v9x2","next":0}`))
	fmt.Println(err)
	// Output:
	// message chat 7 {"n":7} <nil>
	// invalid frame: gap with next 0
}

func ExampleGap_Validate() {
	g := msg.Gap{Type: msg.TypeGap, Channel: "chat", Epoch: "k3v9x2", Next: 57}
	fmt.Println(g.Validate())
	// Output:
	// <nil>
}
