package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/proxyd/proxyd/internal/mitm"
)

// newCACmd is `proxyd ca init --out DIR`.
func newCACmd(stdout interface{ Write([]byte) (int, error) }) *cobra.Command {
	ca := &cobra.Command{
		Use:   "ca",
		Short: "Manage the certificate authority of TLS interception",
	}
	var out string
	initCmd := &cobra.Command{
		Use:   "init --out DIR",
		Short: "Create a signing CA for tls.intercept: DIR/ca.pem and DIR/ca-key.pem",
		Long: `init writes a new ECDSA P-256 certificate authority (CA:true, path length 0,
valid 10 years) to DIR/ca.pem and its key to DIR/ca-key.pem (mode 0600), and
prints how to make clients trust it. It never overwrites existing files.`,
		Args: fileArgHint,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return &configError{errors.New("ca init: --out DIR is required")}
			}
			certPath, keyPath, err := mitm.InitCA(out, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "wrote %s and %s\n\nConfigure proxyd:\n\n  tls:\n    intercept: [\"api.example.com\"]\n    ca_cert: %s\n    ca_key: %s\n\n%s", certPath, keyPath, certPath, keyPath, mitm.TrustInstructions(certPath))
			return nil
		},
	}
	initCmd.Flags().StringVar(&out, "out", "", "directory to write ca.pem and ca-key.pem to (created if missing)")
	ca.AddCommand(initCmd)
	return ca
}
