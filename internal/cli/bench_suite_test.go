package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/bench"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// compileReportSchema compiles docs/bench-report.schema.json.
func compileReportSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "docs", "bench-report.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(bench.SchemaID, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(bench.SchemaID)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBenchSuiteQuick runs `duplex bench --quick --out DIR`, the whole
// default suite shortened, with its two hubs started as child processes
// (this test binary standing in for duplex, see TestMain), and checks what
// a user gets: the six-claims table on stdout and in report.md, a
// report.json valid against the schema (and a broken one refused), and
// every chart as a decodable PNG and SVG.
func TestBenchSuiteQuick(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	code, stdout, stderr := benchMain(t, ctx, "bench", "--quick", "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if strings.Contains(stderr, "\r") {
		t.Errorf("a progress bar was drawn on a non-terminal: %q", stderr)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"stdout": stdout, "report.md": string(md)} {
		i := strings.Index(text, "## The six claims")
		if i < 0 {
			t.Fatalf("%s has no six-claims table:\n%s", name, text)
		}
		if j := strings.Index(text, "## Delivery per transport"); j < i {
			t.Errorf("%s: the claims are not the first table", name)
		}
		for n := 1; n <= 6; n++ {
			if !strings.Contains(text[i:], "\n| "+string(rune('0'+n))+" | ") {
				t.Errorf("%s: claims table has no row %d", name, n)
			}
		}
		if strings.Contains(text, "not measured") {
			t.Errorf("%s: a claim was not measured:\n%s", name, text)
		}
	}

	raw, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	schema := compileReportSchema(t)
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := schema.Validate(inst); err != nil {
		t.Errorf("report.json does not validate: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "claims")
	m["surprise"] = 1
	if err := schema.Validate(m); err == nil {
		t.Error("a report without claims and with an unknown member validated")
	}
	var r bench.SuiteReport
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatal(err)
	}
	if len(r.Hubs) != 2 || r.Hubs[0].PID == 0 || r.Hubs[1].WriteDelayMS != 0 {
		t.Errorf("hubs: %+v, want two child hubs, the second with --write-delay 0", r.Hubs)
	}
	for _, d := range r.Delivery {
		if d.Delivered == 0 || d.HubCPUMSPer1000 <= 0 {
			t.Errorf("%s: delivered %d, hub CPU %.2f ms/1000 (read from the child's /proc)", d.Variant, d.Delivered, d.HubCPUMSPer1000)
		}
	}

	for _, name := range bench.ChartNames {
		f, err := os.Open(filepath.Join(dir, name+".png"))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Errorf("%s.png: %v", name, err)
		} else if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 200 {
			t.Errorf("%s.png is %v", name, b)
		}
		svg, err := os.ReadFile(filepath.Join(dir, name+".svg"))
		if err != nil {
			t.Fatal(err)
		}
		var root struct {
			XMLName xml.Name
		}
		if err := xml.Unmarshal(svg, &root); err != nil || root.XMLName.Local != "svg" {
			t.Errorf("%s.svg: root %q, %v", name, root.XMLName.Local, err)
		}
		if !strings.Contains(string(md), "("+name+".png)") {
			t.Errorf("report.md does not show %s.png", name)
		}
	}
}

// TestCommittedReportValidates keeps docs/bench/report.json, the report
// shown in docs/benchmarks.md, valid against the schema it documents.
func TestCommittedReportValidates(t *testing.T) {
	t.Parallel()
	f, err := os.Open(filepath.Join("..", "..", "docs", "bench", "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	inst, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := compileReportSchema(t).Validate(inst); err != nil {
		t.Error(err)
	}
}
