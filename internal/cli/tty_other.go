//go:build !linux

package cli

import "os"

// isTerminal reports false off Linux: the progress bar is only drawn where
// a terminal is known for sure.
func isTerminal(f *os.File) bool { return false }
