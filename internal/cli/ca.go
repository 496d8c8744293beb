package cli

import (
	"crypto/tls"
	"fmt"

	"github.com/duplexhq/duplex/client"
)

// trustCA is the client TLS configuration of a --ca flag: nil (the system's
// roots) for an empty file name, else a pool of the PEM certificates in
// file.
func trustCA(file string) (*tls.Config, error) {
	if file == "" {
		return nil, nil
	}
	pool, err := client.CertPoolFromPEM(file)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	return &tls.Config{RootCAs: pool}, nil
}
