package cli

import (
	"context"
	"errors"
)

func runServe(ctx context.Context, stdio Stdio, args []string) error {
	return errors.New("not implemented yet")
}
