package e2e

import (
	"archive/zip"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGoInstallOutsideTheRepo runs the README's
//
//	go install github.com/duplexhq/duplex/cmd/duplex@latest
//
// as written, from an empty directory outside any module, with one thing
// swapped: GOPROXY is a module proxy on disk (the file:// form of the
// GOPROXY protocol) that serves this checkout as
// github.com/duplexhq/duplex v0.1.0, then this machine's module download
// cache for the dependencies, and nothing else. Then it runs the installed
// binary.
//
// That proves what an install from the real proxy depends on in this
// repository: go.mod names the module path the README uses, cmd/duplex is
// at that path, go.mod has no replace or exclude directive (go install
// pkg@version refuses them), go.sum covers every dependency, and the
// module builds from its zip alone (nothing outside the tracked and
// unignored files). It does not prove the GitHub repository, its tags, the
// public proxy or the checksum database (GOSUMDB is off: there is no
// network here).
func TestGoInstallOutsideTheRepo(t *testing.T) {
	const (
		module  = "github.com/duplexhq/duplex"
		version = "v0.1.0"
	)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(string(gomod), "\n"); first != "module "+module {
		t.Fatalf("go.mod starts %q, the README installs %s", first, module)
	}
	listed, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}

	tmp := t.TempDir()
	dir := filepath.Join(tmp, "proxy", module, "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	for name := range strings.SplitSeq(strings.TrimRight(string(listed), "\x00"), "\x00") {
		data, err := os.ReadFile(filepath.Join(root, name))
		if os.IsNotExist(err) {
			continue // deleted in the work tree, not yet in the index
		}
		if err != nil {
			t.Fatal(err)
		}
		w, err := zw.Create(module + "@" + version + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"list":            []byte(version + "\n"),
		version + ".info": []byte(`{"Version":"` + version + `","Time":"2026-01-01T00:00:00Z"}`),
		version + ".mod":  gomod,
		version + ".zip":  zbuf.Bytes(),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	downloads, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	work, gobin := filepath.Join(tmp, "work"), filepath.Join(tmp, "bin")
	for _, d := range []string{work, gobin} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	install := exec.Command("go", "install", module+"/cmd/duplex@latest")
	install.Dir = work
	install.Env = append(os.Environ(),
		"GOPROXY=file://"+filepath.Join(tmp, "proxy")+",file://"+filepath.Join(strings.TrimSpace(string(downloads)), "cache", "download"),
		"GOSUMDB=off", "GOPRIVATE=", "GONOPROXY=", "GOWORK=off", "GOTOOLCHAIN=local",
		"GOBIN="+gobin,
		// A module cache of its own, so v0.1.0 here is never confused
		// with another run's; -modcacherw lets t.TempDir remove it.
		"GOMODCACHE="+filepath.Join(tmp, "modcache"), "GOFLAGS=-modcacherw",
	)
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("go install %s/cmd/duplex@latest from %s: %v\n%s", module, work, err, out)
	}
	out, err := exec.Command(filepath.Join(gobin, "duplex"), "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "duplex ") {
		t.Fatalf("the installed duplex --version: %q, %v", out, err)
	}
}
