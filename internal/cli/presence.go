package cli

import (
	"fmt"
	"path"
)

// channelGlobs returns a matcher for the --presence globs (path.Match
// patterns, as the token's channel claims are), or nil when there are none:
// presence off everywhere.
func channelGlobs(globs []string) (func(string) bool, error) {
	if len(globs) == 0 {
		return nil, nil
	}
	for _, g := range globs {
		if _, err := path.Match(g, ""); err != nil {
			return nil, fmt.Errorf("glob %q: %w", g, err)
		}
	}
	gs := append([]string(nil), globs...)
	return func(channel string) bool {
		for _, g := range gs {
			if ok, _ := path.Match(g, channel); ok {
				return true
			}
		}
		return false
	}, nil
}
