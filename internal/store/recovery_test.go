package store

import (
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/testredis"
)

// Redis restarted 20 times under load (requests always waiting): the
// store is used again within 100 ms of Redis answering PING for 18 of the
// 20 restarts (p90), and within 1 s for all (the documented bound). Before
// client.go answered go-redis's dial circuit breaker probe, the pool
// failed every call for up to a second after a few failed dials (issue
// 27: 26–936 ms; this test: 433–984 ms). The slowest of 20 (p99) is
// logged, not asserted: on a loaded machine (load average 7 on two
// cores, -race) one restart in a few runs takes 110–130 ms with no call
// failing — a slow call, not the breaker.
func TestRestartRecovery(t *testing.T) {
	r := testredis.Start(t)
	d := &fakeDisp{}
	d.setDemand(3, 100)
	s := newStore(t, r.URL(), d)
	s.Start(1000, 10)
	defer s.Close()
	eventually(t, 2*time.Second, "up", func() bool { return s.Status().Up })
	var took []time.Duration
	for i := range 20 {
		r.Kill()
		eventually(t, 2*time.Second, "down", func() bool { return !s.Status().Up })
		// Down for 20 to 400 ms: short and long outages alike.
		<-time.After(time.Duration(20+i*20) * time.Millisecond)
		r.Restart()
		eventually(t, 2*time.Second, "up again", func() bool { return s.Status().Up })
		took = append(took, s.Status().Since.Sub(r.Answered()))
	}
	slices.Sort(took)
	p50, p90, p99 := took[len(took)/2], took[len(took)*9/10-1], took[len(took)*99/100]
	t.Logf("store up again after Redis answered: min %v, p50 %v, p90 %v, p99 %v (20 restarts)", took[0], p50, p90, p99)
	if p90 > 100*time.Millisecond || p99 > time.Second {
		t.Errorf("p90 %v, p99 %v to use the store again after a restart, want at most 100 ms and 1 s: %v", p90, p99, took)
	}
	// 20 outages of 4 or more failed dials each open go-redis's breaker:
	// its probe must have been recognised (client.go, breakerProbe).
	if s.dial.probes.Load() == 0 {
		t.Error("the dialer never saw go-redis's breaker probe: was internal/pool's tryDial renamed?")
	}
}

// cutProxy forwards TCP to Redis; cut stops every byte (connections
// stay open and silent, new ones are accepted and never answered) as a
// network partition does, heal lets new connections through again.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		ln.Close()
		p.setCut(false) // closes what is open
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		cut := p.cut
		p.mu.Unlock()
		if cut {
			continue // accepted, never answered (closed at heal)
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, up)
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(up, c) })
		p.wg.Go(func() { p.pipe(c, up) })
	}
}

// pipe copies until either side closes; while cut it drops what it reads.
func (p *cutProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			dst.Close()
			return
		}
		p.mu.Lock()
		cut := p.cut
		p.mu.Unlock()
		if !cut {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
	}
}

// setCut cuts or heals. The connections open across a cut are closed
// when it heals: go-redis dropped them at its read deadline already, and
// a call still waiting on one ends at once (over a real network it would
// wait out redis.timeout).
func (p *cutProxy) setCut(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = on
	if !on {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

// A network cut between proxyd and Redis (10 times, under load): the
// store goes down within redis.timeout and is used again within
// redis.timeout + 50 ms of the network healing. A measurement and a
// guard, not a reproduction: the proxy accepts connections during the
// cut, so dials do not fail and go-redis's breaker stays shut (failed
// dials are TestRestartRecovery's).
func TestNetworkCutRecovery(t *testing.T) {
	r := testredis.Start(t)
	p := newCutProxy(t, r.Addr())
	d := &fakeDisp{}
	d.setDemand(3, 100)
	s, err := New(config.Redis{URL: "redis://" + p.ln.Addr().String() + "/0", KeyPrefix: "t", Timeout: 100 * time.Millisecond, OnError: config.OnErrorLocal}, d, Hooks{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Start(1000, 10)
	defer s.Close()
	eventually(t, 2*time.Second, "up", func() bool { return s.Status().Up })
	var took []time.Duration
	for i := range 10 {
		p.setCut(true)
		eventually(t, 2*time.Second, "down", func() bool { return !s.Status().Up })
		<-time.After(time.Duration(50+i*30) * time.Millisecond) // the scenario: cuts of 50 to 320 ms
		healed := time.Now()
		p.setCut(false)
		eventually(t, 2*time.Second, "up again", func() bool { return s.Status().Up })
		took = append(took, s.Status().Since.Sub(healed))
	}
	slices.Sort(took)
	t.Logf("store up again after the network healed: min %v, p50 %v, max %v (10 cuts; redis.timeout 100ms)", took[0], took[len(took)/2], took[len(took)-1])
	if most := took[len(took)-1]; most > 150*time.Millisecond {
		t.Errorf("up again %v after the network healed, want within redis.timeout + 50 ms: %v", most, took)
	}
}
