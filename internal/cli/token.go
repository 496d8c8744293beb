package cli

import (
	"context"
	"errors"
)

func runToken(ctx context.Context, stdio Stdio, args []string) error {
	return errors.New("not implemented yet")
}
