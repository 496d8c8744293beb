package bench

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/server"
)

// TestRunSuiteQuick runs the whole suite, shortened, against an in-process
// hub and checks every section measured something.
func TestRunSuiteQuick(t *testing.T) {
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{WriteDelay: -1}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := RunSuite(ctx, SuiteConfig{Quick: true}, []HubInfo{{Name: "default", URL: h.URL, WriteDelayMS: 0}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var md bytes.Buffer
	if err := r.WriteMarkdown(&md, nil); err != nil {
		t.Fatal(err)
	}
	t.Log(md.String())
	dir := t.TempDir()
	if d := os.Getenv("BENCH_CHART_DIR"); d != "" {
		dir = d
	}
	if _, err := r.WriteCharts(dir); err != nil {
		t.Fatal(err)
	}
	for _, d := range r.Delivery {
		if d.Delivered == 0 || d.Error != "" {
			t.Errorf("%s: delivered %d/%d, error %q", d.Variant, d.Delivered, d.Expected, d.Error)
		}
	}
	for _, c := range r.Claims {
		if c.Verdict == "not measured" {
			t.Errorf("claim %s not measured", c.ID)
		}
	}
}
