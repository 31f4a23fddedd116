package main

import (
	"log/slog"

	"github.com/spf13/pflag"
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/clusterauth"
	"github.com/ferrymq/ferry/config"
)

// addClusterFlags adds the flag of the cluster secret's file (the secret
// itself comes from FERRY_CLUSTER_SECRET or the config file, never a flag,
// which ps would show).
func addClusterFlags(fs *pflag.FlagSet) {
	config.AddFlag(fs, "cluster-secret-file", "cluster-secret-file",
		"file (mode 0600) holding the secret the NameServers and brokers share; or set FERRY_CLUSTER_SECRET")
}

// clusterOption supplies the cluster key the configuration sets to the
// NameServer and the native front-end. Without one, generate (ferry serve,
// whose NameServer and broker share the process) supplies a random key,
// and otherwise none is supplied: a NameServer then admits loopback
// brokers only, a broker registers unsigned.
func clusterOption(cfg config.Config, logger *slog.Logger, generate bool) fx.Option {
	secret, loose, err := clusterSecret(cfg)
	switch {
	case err != nil:
		return fx.Error(err)
	case loose:
		logger.Warn("the cluster secret file is readable by others than its owner: chmod 600 it", "file", cfg.ClusterSecretFile)
	case secret == nil && generate:
		k, err := clusterauth.GenerateKey()
		if err != nil {
			return fx.Error(err)
		}
		return fx.Supply(k)
	case secret == nil:
		return fx.Options()
	}
	k, err := clusterauth.NewKey(secret)
	if err != nil {
		return fx.Error(err)
	}
	return fx.Supply(k)
}

// clusterSecret is the secret the configuration sets (cluster-secret or
// cluster-secret-file), nil when none; loose reports a secret file others
// than its owner may read.
func clusterSecret(cfg config.Config) (secret []byte, loose bool, err error) {
	switch {
	case cfg.ClusterSecretFile != "":
		return clusterauth.ReadSecretFile(cfg.ClusterSecretFile)
	case cfg.ClusterSecret != "":
		return []byte(cfg.ClusterSecret), false, nil
	}
	return nil, false, nil
}
