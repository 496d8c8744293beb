package cli

import (
	"context"
	"errors"
)

func runBench(ctx context.Context, stdio Stdio, args []string) error {
	return errors.New("not implemented yet")
}
