// Package cli implements the duplex subcommands. It is the only package that
// reads flags and environment variables, and the only one that wires the
// hub, engines, server, proxy and bench together.
package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// Version is the duplex version, set at build time with
// -ldflags "-X github.com/duplexhq/duplex/internal/cli.Version=...".
var Version = "0.1.0-dev"

// Stdio holds the standard streams of one invocation, so tests can run
// Main in-process.
type Stdio struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// command is one subcommand: run parses args itself and returns an error to
// print, or errUsage after the flag package already printed usage.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, io Stdio, args []string) error
}

func commands() []command {
	return []command{
		{"serve", "run the publish/subscribe hub", runServe},
		{"pub", "publish messages to a channel", runPub},
		{"sub", "subscribe to channels and print messages as NDJSON", runSub},
		{"proxy", "run the HTTP/SOCKS proxy, or 'proxy check' a list of proxies", runProxy},
		{"bench", "measure the transports side by side", runBench},
		{"token", "mint an access token for a secret", runToken},
		{"version", "print the version", runVersion},
	}
}

// errUsage means the usage text was already printed.
var errUsage = errors.New("usage")

// Main runs the duplex command line and returns the process exit code.
// Asked-for help (--help, duplex help [CMD]) and the version go to
// stdio.Out with exit 0; usage after a mistake goes to stdio.Err with
// exit 2.
func Main(ctx context.Context, args []string, stdio Stdio) int {
	if len(args) == 0 {
		usage(stdio.Err)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(stdio.Out)
		return 0
	case "-version", "--version":
		args = []string{"version"}
	case "help":
		if len(args) == 1 {
			usage(stdio.Out)
			return 0
		}
		// duplex help CMD is duplex CMD --help.
		args = []string{args[1], "--help"}
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, stdio, args[1:])
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		default:
			fmt.Fprintf(stdio.Err, "duplex %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stdio.Err, "duplex: unknown command %q", args[0])
	if near := nearestCommand(args[0]); near != "" {
		fmt.Fprintf(stdio.Err, "; did you mean '%s'?", near)
	}
	fmt.Fprint(stdio.Err, "\n\n")
	usage(stdio.Err)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: duplex <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'duplex help <command>' or 'duplex <command> --help' for the flags of one command,")
	fmt.Fprintln(w, "'duplex --version' for the version.")
}

// flagOutput is where a FlagSet made by [newFlagSet] writes. While the
// arguments are parsed it holds what the flag package says, because only
// the outcome tells where it belongs: the usage asked for with --help goes
// to standard output, a parse error and the usage after it to standard
// error. After parsing, it writes to standard error: a later fs.Usage()
// is the answer to a mistake the command found in its arguments.
type flagOutput struct {
	stdio  Stdio
	held   bytes.Buffer
	parsed bool
}

func (o *flagOutput) Write(p []byte) (int, error) {
	if !o.parsed {
		return o.held.Write(p)
	}
	if o.stdio.Err == nil {
		return len(p), nil
	}
	return o.stdio.Err.Write(p)
}

// newFlagSet returns a FlagSet that returns errors instead of exiting and
// prints its usage as [flagOutput] says.
func newFlagSet(stdio Stdio, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("duplex "+name, flag.ContinueOnError)
	fs.SetOutput(&flagOutput{stdio: stdio})
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: duplex %s %s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and maps a parse failure to errUsage. The usage
// text goes to standard output for --help, to standard error otherwise.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if o, ok := fs.Output().(*flagOutput); ok {
		o.parsed = true
		dst := o.stdio.Err
		if errors.Is(err, flag.ErrHelp) {
			dst = o.stdio.Out
		}
		if dst != nil {
			dst.Write(o.held.Bytes())
		}
		o.held.Reset()
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}

// missingArg reports a missing positional argument, then the usage, on
// standard error, and returns errUsage: "missing CHANNEL" says at once
// what the usage text below it would only imply.
func missingArg(fs *flag.FlagSet, stdio Stdio, what string) error {
	fmt.Fprintf(stdio.Err, "%s: missing %s\n\n", fs.Name(), what)
	fs.Usage()
	return errUsage
}

// envOr returns the environment variable key, or def when it is unset.
func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func runVersion(ctx context.Context, stdio Stdio, args []string) error {
	fs := newFlagSet(stdio, "version", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdio.Out, "duplex %s\n", Version)
	return nil
}
