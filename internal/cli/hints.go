package cli

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// maxSuggestLen bounds the names [nearestCommand] compares, and so its
// cost: no command is near a longer one.
const maxSuggestLen = 32

// nearestCommand returns the command name closest to name by edit
// distance, or "" when none is close enough to be a likely typo: at most
// two edits, and fewer than half of the longer name's letters.
func nearestCommand(name string) string {
	if len(name) > maxSuggestLen {
		return ""
	}
	best, bestDist := "", 3
	for _, c := range commands() {
		d := editDistance(strings.ToLower(name), c.name)
		if d < bestDist && 2*d < max(len(name), len(c.name)) {
			best, bestDist = c.name, d
		}
	}
	return best
}

// editDistance is the optimal-string-alignment distance between a and b,
// in bytes: the fewest insertions, deletions, substitutions and swaps of
// two neighbours that turn a into b, the usual shapes of a typo. Its cost
// is len(a)·len(b); names longer than maxSuggestLen are not compared.
func editDistance(a, b string) int {
	// d[i][j] is the distance between a[:i] and b[:j].
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// explainRefused adds to a "connection refused" error the likely reason a
// new user meets it: no hub at url. Other errors come back unchanged.
func explainRefused(err error, url string) error {
	if err == nil || !isRefused(err) {
		return err
	}
	return fmt.Errorf("%w (is `duplex serve` running at %s?)", err, url)
}

// isRefused reports whether err is a refused TCP connection. The text is
// checked too, for errors a library formatted without wrapping.
func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(err.Error(), "connection refused")
}
