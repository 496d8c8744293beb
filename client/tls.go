package client

import (
	"crypto/x509"
	"fmt"
	"os"
)

// CertPoolFromPEM reads the PEM certificates in file (a private CA, or a
// hub's self-signed certificate) into a pool for [DialOptions].TLSConfig's
// RootCAs.
func CertPoolFromPEM(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it", file)
	}
	return pool, nil
}
