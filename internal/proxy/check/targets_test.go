package check

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestParseList(t *testing.T) {
	list := `# proxies
127.0.0.1:3128
http://u:p%40ss@proxy.test:8080 # squid

socks5://127.0.0.1:1080
ftp://127.0.0.1:21
127.0.0.1:3128
nohost
127.0.0.1:0
http://h:1/path
u:p@127.0.0.1:9
` + strings.Repeat("x", maxLine+10) + "\n" + "socks4a://10.0.0.1:1080"
	ts, bad, err := ParseList(strings.NewReader(list))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tg := range ts {
		got = append(got, fmt.Sprintf("%s@%d", tg, tg.Line))
	}
	want := []string{"127.0.0.1:3128@2", "http://u:xxxxx@proxy.test:8080@3", "socks5://127.0.0.1:1080@5", "u:xxxxx@127.0.0.1:9@11", "socks4a://10.0.0.1:1080@13"}
	if !slices.Equal(got, want) {
		t.Errorf("targets %q, want %q", got, want)
	}
	var lines []int
	for _, b := range bad {
		lines = append(lines, b.Line)
	}
	if !slices.Equal(lines, []int{6, 7, 8, 9, 10, 12}) {
		t.Errorf("bad lines %v, want 6 7 8 9 10 12: %v", lines, bad)
	}
	if !strings.Contains(bad[1].Err, "repeats line 2") {
		t.Errorf("duplicate reported as %q", bad[1].Err)
	}
	if p := ts[0].Protocols; !slices.Equal(p, Protocols) {
		t.Errorf("host:port probes %v, want every protocol", p)
	}
	if p := ts[1].Protocols; !slices.Equal(p, []string{ProtoHTTP, ProtoConnect}) {
		t.Errorf("http:// probes %v", p)
	}
}
