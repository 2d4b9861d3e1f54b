package proxy

import (
	"github.com/proxyd/proxyd/internal/h1"
	"github.com/proxyd/proxyd/internal/upstream"
)

// The proxy and upstream.CopyResponse reach methods of the h1 server's
// ResponseWriter through type assertions on interfaces of their own; an
// assertion that no longer matches (a method renamed on one side) would be
// silently false, and the feature gone without a failing build. h1 checks
// its ResponseWriter against h1.ClientWatcher, h1.HeaderAdopter and
// h1.ReasonSetter (internal/h1/contracts.go); these check that each of
// those satisfies the interface asserted here.
var (
	_ clientWatcher          = h1.ClientWatcher(nil)
	_ reasonSetter           = h1.ReasonSetter(nil)
	_ upstream.HeaderAdopter = h1.HeaderAdopter(nil)
)
