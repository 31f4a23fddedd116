package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/config"
)

// checkFiles opens every file cfg names the way the commands that use it
// would, so that ferry config check fails on a missing ACL file or a
// certificate without its key, not the next serve. The error names the key
// and the file.
func checkFiles(cfg config.Config) error {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	// auth.New reads and parses each file as serve does; its errors name
	// the file and the line. One file at a time, so the error names its key.
	yes := true
	for _, f := range []struct{ key, password, acl string }{
		{"auth.password-file", cfg.Auth.PasswordFile, ""},
		{"auth.acl-file", "", cfg.Auth.ACLFile},
	} {
		if f.password == "" && f.acl == "" {
			continue
		}
		ac := auth.Config{PasswordFile: f.password, ACLFile: f.acl, AllowAnonymous: &yes, Logger: quiet}
		if _, err := auth.New(ac); err != nil {
			return fmt.Errorf("%s: %w", f.key, err)
		}
	}
	pairs := []struct {
		keys       string
		cert, key  string
		listenerOn bool
	}{
		{"native.tls-cert, native.tls-key", cfg.Native.TLSCert, cfg.Native.TLSKey, true},
		{"mqtt.tls-cert, mqtt.tls-key", cfg.MQTT.TLSCert, cfg.MQTT.TLSKey, cfg.MQTT.TLSAddr != "off"},
		{"amqp.tls-cert, amqp.tls-key", cfg.AMQP.TLSCert, cfg.AMQP.TLSKey, cfg.AMQP.TLSAddr != "off"},
	}
	for _, p := range pairs {
		if p.cert == "" || !p.listenerOn {
			continue
		}
		if _, err := tls.LoadX509KeyPair(p.cert, p.key); err != nil {
			return fmt.Errorf("%s (%s, %s): %w", p.keys, p.cert, p.key, err)
		}
	}
	if cfg.TLSCA != "" {
		pem, err := os.ReadFile(cfg.TLSCA)
		if err != nil {
			return fmt.Errorf("tls-ca: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return fmt.Errorf("tls-ca %s: no PEM certificate in it", cfg.TLSCA)
		}
	}
	if _, _, err := clusterSecret(cfg); err != nil {
		return err // names cluster-secret-file and the file
	}
	return nil
}
