package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/duplexhq/duplex/internal/server"
)

// serveTLS loads --tls-cert and --tls-key for duplex serve and reloads them
// on every SIGHUP until ctx ends: a good new pair serves every handshake
// from then on (connections already open keep theirs), a bad one is logged
// and the old pair kept. Both flags empty: nil, plain HTTP.
func serveTLS(ctx context.Context, logger *slog.Logger, certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("--tls-cert and --tls-key go together: give both, or neither for plain HTTP")
	}
	kp, err := server.LoadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	logCert(logger, "TLS certificate loaded", kp)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			if err := kp.Reload(); err != nil {
				logger.Error("TLS certificate reload failed; still serving the old one", "err", err,
					"serial", kp.Leaf().SerialNumber.String())
				continue
			}
			logCert(logger, "TLS certificate reloaded", kp)
		}
	}()
	return &tls.Config{GetCertificate: kp.GetCertificate}, nil
}

func logCert(logger *slog.Logger, what string, kp *server.KeyPair) {
	leaf := kp.Leaf()
	logger.Info(what, "subject", leaf.Subject.String(), "serial", leaf.SerialNumber.String(),
		"not_after", leaf.NotAfter.UTC())
}
