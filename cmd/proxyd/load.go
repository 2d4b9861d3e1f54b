package main

// Loading the configuration: the command reads the --config file, the
// environment and the flags, and config.Load merges and decodes them
// (docs/configuration.md, "Where values come from").

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/pflag"

	"github.com/proxyd/proxyd/internal/config"
)

// loadOptions are the inputs of loadConfig.
type loadOptions struct {
	// File is the YAML file (--config); "" means none. When empty, a
	// --config flag set in Flags is used instead.
	File string
	// Env is an os.Environ()-style "KEY=VALUE" list; only PROXYD_* entries
	// are read. When a name appears twice the first wins, as with
	// os.Getenv.
	Env []string
	// Flags may be nil. Only flags defined by defineFlags and set by the
	// user (Changed) override.
	Flags *pflag.FlagSet
}

// configPath is the --config file, "" when none.
func (o loadOptions) configPath() string {
	if o.File != "" {
		return o.File
	}
	if o.Flags != nil {
		if f := o.Flags.Lookup("config"); f != nil && f.Changed {
			return f.Value.String()
		}
	}
	return ""
}

// flagKeys maps each configuration flag to the key it overrides.
var flagKeys = []struct{ flag, key string }{
	{"listen", "listen"},
	{"admin-listen", "admin.listen"},
	{"log-level", "log.level"},
}

// defineFlags defines --config, --listen, --admin-listen and --log-level
// on fs. The defaults shown are the built-in ones; only a flag the user
// sets overrides the file and the environment.
func defineFlags(fs *pflag.FlagSet) {
	d := config.Default()
	fs.String("config", "", "YAML configuration `file`; without it the built-in defaults apply (see configs/proxyd.yaml)")
	fs.String("listen", d.Listen, "proxy listener `host:port`; overrides the listen key and PROXYD_LISTEN")
	fs.String("admin-listen", d.Admin.Listen, "admin listener (API, metrics, health) `host:port`; overrides admin.listen and PROXYD_ADMIN_LISTEN")
	fs.String("log-level", d.Log.Level, "log `level`: debug, info, warn or error; overrides log.level and PROXYD_LOG_LEVEL")
}

// loadConfig builds the configuration from defaults, o.File, o.Env and
// o.Flags, in rising precedence, and validates it. An error names the file,
// key, variable or flag at fault and the reason, one problem per line.
func loadConfig(o loadOptions) (config.Config, error) {
	cfg, _, err := loadConfigSum(o)
	return cfg, err
}

// loadConfigSum is loadConfig that also returns the SHA-256 of the file it
// read (nil without a file): the file watcher's starting point, so that an
// edit made between this read and the watch is not taken as the baseline.
func loadConfigSum(o loadOptions) (config.Config, []byte, error) {
	file := o.configPath()
	var data []byte
	if file != "" {
		var err error
		if data, err = os.ReadFile(file); err != nil {
			var pe *fs.PathError
			switch {
			case errors.Is(err, fs.ErrNotExist):
				err = errors.New("no such file")
			case errors.As(err, &pe):
				err = pe.Err
			}
			return config.Config{}, nil, fmt.Errorf("config file %s: %w", file, err)
		}
	}
	src := config.Sources{File: file, Data: data, Env: o.Env}
	if o.Flags != nil {
		for _, fk := range flagKeys {
			if f := o.Flags.Lookup(fk.flag); f != nil && f.Changed {
				src.Flags = append(src.Flags, config.Flag{Name: "--" + fk.flag, Key: fk.key, Value: f.Value.String()})
			}
		}
	}
	cfg, err := config.Load(src)
	if err != nil || file == "" {
		return cfg, nil, err
	}
	sum := sha256.Sum256(data)
	return cfg, sum[:], nil
}
