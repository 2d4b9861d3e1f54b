package admin

import "github.com/proxyd/proxyd/internal/config"

// hosts[].shared_concurrency through the API (docs/admin-api.md, "The
// Limits object"): decoded with the rest of the rule (config.Decode),
// and refused without the shared store (config.CheckSharedConcurrency
// names the key).

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
