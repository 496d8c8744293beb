// Package cli implements the duplex subcommands. It is the only package that
// reads flags and environment variables, and the only one that wires the
// hub, engines, server, proxy and bench together.
package cli

import (
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
func Main(ctx context.Context, args []string, stdio Stdio) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdio.Err)
		if len(args) == 0 {
			return 2
		}
		return 0
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
	fmt.Fprintf(stdio.Err, "duplex: unknown command %q\n\n", args[0])
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
	fmt.Fprintln(w, "Run 'duplex <command> --help' for the flags of one command.")
}

// newFlagSet returns a FlagSet that prints to stdio.Err and returns errors
// instead of exiting.
func newFlagSet(stdio Stdio, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("duplex "+name, flag.ContinueOnError)
	fs.SetOutput(stdio.Err)
	fs.Usage = func() {
		fmt.Fprintf(stdio.Err, "usage: duplex %s %s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and maps a parse failure to errUsage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
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
