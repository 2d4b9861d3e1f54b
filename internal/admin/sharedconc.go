package admin

import (
	"encoding/json"

	"github.com/proxyd/proxyd/internal/config"
)

// hosts[].shared_concurrency through the API (docs/admin-api.md, "The
// Limits object"): read as a boolean, and refused without the shared
// store (config.CheckSharedConcurrency names the key).

// readBool reads true or false into *dst; null leaves it unchanged.
func readBool(key string, v json.RawMessage, dst *bool) error {
	switch jsonKind(v) {
	case "null":
		return nil
	case "boolean":
		return json.Unmarshal(v, dst)
	}
	return wrongType(key, v, "true or false")
}

// storeKind is limits.store as this process runs it: redis when it has a
// shared store, else memory.
func (s *Server) storeKind() string {
	if s.store != nil {
		if _, ok := s.store(); ok {
			return config.StoreRedis
		}
	}
	return config.StoreMemory
}
