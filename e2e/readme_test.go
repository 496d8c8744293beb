package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestREADME runs every ```bash and ```sh block of README.md, in order and
// as written, the way a new user meets them, so the README cannot rot.
//
// The conventions, which the README keeps:
//
//   - `go run ./cmd/duplex` is the duplex the test builds once: a `go`
//     shim first on PATH execs that binary for `go run ./cmd/duplex ARGS`
//     and the real go for anything else, so each line costs no compile.
//   - The first block's first line, `go run ./cmd/duplex serve`, is the hub
//     the rest of the README talks to. The test starts that line itself,
//     as the user would in a terminal of its own, and waits until it says
//     it listens on 127.0.0.1:8080. The README's addresses are fixed
//     (8080, 8081, 8082, 8083, 6390 for its redis-server, 1080 on
//     127.0.0.1), so the test uses them verbatim: it
//     fails at once, saying which, if one of them is taken, and it holds a
//     machine-wide lock (lockREADMEPorts) so concurrent runs from several
//     checkouts take turns instead of colliding.
//   - Lines in excludedLines are not run: `./scripts/test` (it runs this
//     test) and `go install …@latest` (it needs the network; installTest
//     in install_test.go checks it offline).
//   - Each block runs in one `bash -o pipefail` in the repository root,
//     stdin /dev/null, with DUPLEX_* and proxy variables cleared. Any
//     command that exits non-zero fails the test (an ERR trap reports it),
//     except curl's 28 when the command line asked for -m (--max-time): the
//     bounded form of an endless stream. A block has blockTimeout.
//   - Lines ending in `&` are the user's background servers. They run on
//     as the blocks that follow talk to them; at the end the test sends
//     each SIGTERM by PID and waits for it.
//   - readmeBlocks below says, per block, what its standard output must
//     show. A block added to the README must be added there too.
func TestREADME(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := shellBlocks(string(readme))
	if len(blocks) != len(readmeBlocks) {
		t.Fatalf("README.md has %d shell blocks, this test knows %d: say in readmeBlocks what each prints", len(blocks), len(readmeBlocks))
	}
	for i, b := range blocks {
		if first := firstCommand(b.text); !strings.HasPrefix(first, readmeBlocks[i].first) {
			t.Fatalf("README.md block %d (line %d) starts %q, readmeBlocks[%d] expects %q", i+1, b.line, first, i, readmeBlocks[i].first)
		}
	}
	hubLine := firstCommand(blocks[0].text)
	if hubLine != "go run ./cmd/duplex serve" {
		t.Fatalf("README.md's first command is %q, want the hub, `go run ./cmd/duplex serve`", hubLine)
	}

	lockREADMEPorts(t)
	for _, addr := range readmeAddrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s is taken (%v): the README's commands use it as written; stop what listens there and run again", addr, err)
		}
		ln.Close()
	}

	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	env := readmeEnv(t, root)
	startREADMEHub(t, root, env, blocks[0].lines[0])

	for i, b := range blocks {
		want := readmeBlocks[i]
		lines := b.lines
		if i == 0 {
			lines = append([]string{": the hub, started above"}, lines[1:]...)
		}
		out := runREADMEBlock(t, root, env, b.line, lines)
		for _, re := range want.stdout {
			if !regexp.MustCompile(re).MatchString(out) {
				t.Errorf("README.md block at line %d: stdout does not match %s; it was:\n%s", b.line, re, out)
			}
		}
	}
}

// readmeAddrs are the addresses the README's commands listen on.
var readmeAddrs = []string{"127.0.0.1:8080", "127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083", "127.0.0.1:6390", "127.0.0.1:1080"}

// excludedLines are README commands the test does not run, by the start
// of the line, each with why.
var excludedLines = map[string]string{
	"./scripts/test": "it runs this test",
	"go install github.com/duplexhq/duplex/cmd/duplex@latest": "it needs the network; TestGoInstallOutsideTheRepo runs it against a local module proxy",
}

// blockTimeout bounds one README block: a hang guard, not a speed
// assertion (the benchmark block takes about 20 s).
const blockTimeout = 2 * time.Minute

// readmeBlock is what the test expects of one shell block: the start of
// its first command, to be sure the list matches the README, and
// expressions its standard output must match.
type readmeBlock struct {
	first  string
	stdout []string
}

var (
	position = `chat:[a-z0-9]+:`
	epoch    = `"epoch":"[a-z0-9]+"`
)

var readmeBlocks = []readmeBlock{
	{first: "go run ./cmd/duplex serve"},
	{first: "go install github.com/duplexhq/duplex/cmd/duplex@latest"},
	{first: "curl -s -X POST http://127.0.0.1:8080/", stdout: []string{
		`(?m)^\{"channel":"chat",` + epoch + `,"offset":1,"time":\d+\}$`,
		`(?m)^` + position + `2\n` + position + `3\n` + position + `4$`,
		`(?m)^\{"channel":"chat",` + epoch + `,"messages":\[\{"type":"message","channel":"chat",` + epoch + `,"offset":1,.*"data":\{"text":"hi"\}\},\{.*"offset":2,.*"data":\{"text":"hello"\}\}\],"next":2,"oldest":1,"latest":4\}$`,
		`(?m)^\{"channel":"chat",` + epoch + `,"oldest":1,"latest":4,"subscribers":0\}$`,
		`(?m)^\{"error":\{"code":"invalid_json",`,
	}},
	{first: "go run ./cmd/duplex sub --cursor 'chat::0' --count 3 chat", stdout: []string{
		// Two runs of sub, three messages each.
		`(?s)^(\{"type":"message","channel":"chat",` + epoch + `,"offset":1,[^\n]*"data":\{"text":"hi"\}\}\n` +
			`\{[^\n]*"offset":2,[^\n]*\}\n\{[^\n]*"offset":3,[^\n]*"data":\{"n":1\}\}\n){2}`,
		`(?m)^id: ` + position + `4\nevent: message\ndata: \{"type":"message",.*"offset":4,.*"data":\{"n":2\}\}$`,
		`(?m)^\{"type":"message","channel":"chat",` + epoch + `,"offset":4,.*"data":\{"n":2\}\}$`,
		`(?m)^\{"messages":\[\{"type":"message".*"offset":4,.*\}\],"gaps":\[\],"cursor":"` + position + `4"\}$`,
	}},
	{first: "go run ./cmd/duplex serve --listen 127.0.0.1:8081 --jwt-secret s3cret &", stdout: []string{
		`(?m)^\{"status":"ok"\}$`,
		`(?m)^\{"error":\{"code":"unauthorized",`,
		`(?m)^\{"channel":"chat",` + epoch + `,"offset":1,"time":\d+\}$`,
		`(?m)^\{"type":"message","channel":"chat",` + epoch + `,"offset":1,.*"data":\{"text":"hi"\}\}$`,
	}},
	{first: "redis-server --port 6390 --bind 127.0.0.1 --save '' --appendonly no &", stdout: []string{
		`(?m)^PONG\n\{"status":"ok"\}\n\{"status":"ok"\}$`,
		`(?m)^\{"channel":"news",` + epoch + `,"offset":1,"time":\d+\}$`,
		`(?m)^\{"type":"message","channel":"news",` + epoch + `,"offset":1,.*"data":\{"text":"from 8082"\}\}$`,
	}},
	{first: "go run ./cmd/duplex proxy --allow 127.0.0.1/32 &", stdout: []string{
		`(?m)^duplex proxy listening on 127\.0\.0\.1:1080 `,
		`(?m)^\{"status":"ok"\}\n\{"status":"ok"\}$`,
		`(?m)^\{"type":"message","channel":"chat",` + epoch + `,"offset":1,.*\}\n\{"type":"message",.*"offset":2,.*\}$`,
		// proxy check: both URLs are the one proxy, which carries every
		// hub transport (UDP is not probed: the hub has no UDP echo).
		`(?m)^PROXY\s+http\s+connect\s+socks4\s+socks4a\s+socks5\s+socks5h\s+socks5-udp\s+HTTP\s+WS\s+SSE\s+STREAM\s+POLL\s+HOLD\s+UDP\s+ANONYMITY$`,
		`(?m)^socks5://127\.0\.0\.1:1080: carries request/response, long polling, streaming, held streams, full duplex$`,
		`(?m)^http://127\.0\.0\.1:1080: carries request/response, long polling, streaming, held streams, full duplex$`,
	}},
	{first: "go run ./cmd/duplex bench publish", stdout: []string{
		`(?m)^duplex bench publish — `,
		`(?m)^\s+127\.0\.0\.1:8080\s+8\s+-\s+[\d.]+\s+[1-9]\d*\s+0\s`, // target, clients, round, seconds, ops, no errors
		`(?m)^\s+transport\s+readers\s+msg/s\s+delivered/s`,
		`(?m)^\s+ws\s+100\s`, `(?m)^\s+sse\s+100\s`, `(?m)^\s+stream\s+100\s`, `(?m)^\s+poll\s+100\s`,
	}},
}

// shellBlock is one fenced bash or sh block of a Markdown file.
type shellBlock struct {
	line  int      // 1-based line of its first command line in the file
	lines []string // the block's lines, fences excluded
	text  string
}

// shellBlocks returns the ```bash and ```sh blocks of markdown, in order.
func shellBlocks(markdown string) []shellBlock {
	var out []shellBlock
	var cur *shellBlock
	for i, l := range strings.Split(markdown, "\n") {
		switch {
		case cur == nil && (l == "```bash" || l == "```sh"):
			cur = &shellBlock{line: i + 2}
		case cur != nil && l == "```":
			cur.text = strings.Join(cur.lines, "\n") + "\n"
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.lines = append(cur.lines, l)
		}
	}
	return out
}

// firstCommand returns the block's first line that is not blank or a
// comment, without a trailing comment and spaces.
func firstCommand(text string) string {
	for l := range strings.SplitSeq(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if i := strings.Index(l, "  #"); i >= 0 {
			l = l[:i]
		}
		return strings.TrimSpace(l)
	}
	return ""
}

// lockREADMEPorts holds, until the test ends, an exclusive lock on a file
// every run of this test on this machine uses, so runs in several
// checkouts wait for each other instead of failing on each other's ports.
func lockREADMEPorts(t *testing.T) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "duplex-readme-test.lock"), os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
}

// readmeEnv builds duplex, writes the go shim and returns the environment
// the README's commands run in.
func readmeEnv(t *testing.T, root string) []string {
	dir := t.TempDir()
	bin := filepath.Join(dir, "duplex")
	build := exec.Command("go", "build", "-o", bin, "./cmd/duplex")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/duplex: %v\n%s", err, out)
	}
	realGo, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	shimDir := filepath.Join(dir, "shim")
	if err := os.Mkdir(shimDir, 0o755); err != nil {
		t.Fatal(err)
	}
	shim := fmt.Sprintf(`#!/bin/bash
# go run ./cmd/duplex ARGS... is the duplex TestREADME built; the rest is go.
if [ "$1" = run ] && [ "$2" = ./cmd/duplex ]; then shift 2; exec %q "$@"; fi
exec %q "$@"
`, bin, realGo)
	if err := os.WriteFile(filepath.Join(shimDir, "go"), []byte(shim), 0o755); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "DUPLEX_"), strings.EqualFold(k, "http_proxy"), strings.EqualFold(k, "https_proxy"),
			strings.EqualFold(k, "all_proxy"), strings.EqualFold(k, "no_proxy"), k == "PATH":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "PATH="+shimDir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// startREADMEHub runs the README's first command as a child process and
// waits until it says it listens where the README says; at the end it
// sends the hub SIGTERM and waits for a clean exit.
func startREADMEHub(t *testing.T, root string, env []string, line string) {
	cmd := exec.Command("bash", "-c", "exec "+line) // exec: the PID is the hub's
	cmd.Dir, cmd.Env = root, env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var said strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() && !strings.Contains(said.String(), "demo page:") {
		said.WriteString(sc.Text() + "\n")
	}
	go io.Copy(io.Discard, stderr)
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("the README's hub after SIGTERM: %v", err)
		}
	})
	for _, want := range []string{"listening on http://127.0.0.1:8080 ", "demo page: http://127.0.0.1:8080/\n"} {
		if !strings.Contains(said.String(), want) {
			t.Fatalf("%s: said %q, want %q", line, said.String(), want)
		}
	}
}

// blockPrelude comes before each block's lines. fd 3 is the test's
// status pipe: each failing command, then the background PIDs and the
// block's end. After that the shell waits for its background jobs, which
// the test ends by PID.
const blockPrelude = `set -o pipefail
trap 'echo "fail $? $LINENO $BASH_COMMAND" >&3' ERR
trap 'echo "pids $(jobs -p | tr "\n" " ")" >&3; echo done >&3; exec 3>&-; wait' EXIT
`

// runREADMEBlock runs one block's lines and returns its standard output.
// It fails the test for each command that exited non-zero (but a curl -m
// ending with 28) and for a block that does not end in blockTimeout.
func runREADMEBlock(t *testing.T, root string, env []string, firstLine int, lines []string) string {
	var script strings.Builder
	script.WriteString(blockPrelude)
	for _, l := range lines {
		trimmed := strings.TrimSpace(l)
		for prefix := range excludedLines {
			if strings.HasPrefix(trimmed, prefix) {
				l = ": excluded: " + strings.ReplaceAll(l, "'", "")
			}
		}
		script.WriteString(l + "\n")
	}
	preludeLines := strings.Count(blockPrelude, "\n")

	dir := t.TempDir()
	stdoutFile, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	stderrFile, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "--noprofile", "--norc", "-c", script.String(), "readme-block")
	cmd.Dir, cmd.Env = root, env
	cmd.Stdout, cmd.Stderr = stdoutFile, stderrFile
	cmd.ExtraFiles = []*os.File{statusW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its own group, for the timeout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	statusW.Close()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	status := make(chan string)
	go func() {
		defer close(status)
		sc := bufio.NewScanner(statusR)
		for sc.Scan() {
			status <- sc.Text()
		}
	}()
	var pids []int
	timeout := time.NewTimer(blockTimeout)
	defer timeout.Stop()
	readmeLine := func(lineno string) string {
		n, _ := strconv.Atoi(lineno)
		return strconv.Itoa(firstLine + n - 1 - preludeLines)
	}
wait:
	for {
		select {
		case s, ok := <-status:
			if !ok {
				t.Fatalf("README.md block at line %d ended without reporting (%v)\nstderr:\n%s", firstLine, <-waited, readFile(t, stderrFile.Name()))
			}
			switch kind, rest, _ := strings.Cut(s, " "); kind {
			case "fail":
				code, rest, _ := strings.Cut(rest, " ")
				lineno, command, _ := strings.Cut(rest, " ")
				if code == "28" && curlMaxTime.MatchString(command) {
					continue
				}
				t.Errorf("README.md line %s: %s: exit %s", readmeLine(lineno), command, code)
			case "pids":
				for f := range strings.FieldsSeq(rest) {
					if pid, err := strconv.Atoi(f); err == nil {
						pids = append(pids, pid)
					}
				}
			case "done":
				break wait
			}
		case <-timeout.C:
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the block's own process group
			<-waited
			t.Fatalf("README.md block at line %d still running after %s\nstdout:\n%s\nstderr:\n%s", firstLine, blockTimeout,
				readFile(t, stdoutFile.Name()), readFile(t, stderrFile.Name()))
		}
	}
	out := readFile(t, stdoutFile.Name())
	t.Cleanup(func() {
		for _, pid := range pids {
			// Only the block's own children: a background job that has
			// ended and been reaped gave its PID back.
			if parentOf(pid) == cmd.Process.Pid {
				syscall.Kill(pid, syscall.SIGTERM)
			}
		}
		select {
		case <-waited:
		case <-time.After(blockTimeout):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-waited
			t.Errorf("README.md block at line %d: background jobs %v outlived SIGTERM", firstLine, pids)
		}
		if t.Failed() {
			t.Logf("README.md block at line %d, stderr:\n%s", firstLine, readFile(t, stderrFile.Name()))
		}
	})
	return out
}

// curlMaxTime matches a curl command that asked for a time limit.
var curlMaxTime = regexp.MustCompile(`^curl\s(.*\s)?(-[a-zA-Z]*m\s|--max-time\s)`)

// parentOf returns pid's parent, or 0 when pid is gone.
func parentOf(pid int) int {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

func readFile(t *testing.T, name string) string {
	b, err := os.ReadFile(name)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Error(err)
	}
	return string(b)
}
