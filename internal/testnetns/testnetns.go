// Package testnetns runs a test in a private network namespace (Linux,
// unshare --net, as root), where it may add addresses to the loopback
// interface, listen on them and dial them without a packet leaving the
// machine: nothing but lo exists there.
//
// A test calls Enter first and returns at once when it reports false:
//
//	func TestAddressAddedLater(t *testing.T) {
//		if !testnetns.Enter(t) {
//			return
//		}
//		testnetns.AddAddr(t, "10.0.0.7")
//		…
//	}
//
// In the test process, Enter runs the test binary again for that test
// alone under unshare --net, reports its output and outcome as the test's,
// and returns false. In that child process it brings lo up and returns
// true. Only top-level tests can enter a namespace.
package testnetns

import (
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// envVar names, in the child process, the test it runs in the namespace.
const envVar = "PROXYD_TESTNETNS"

// Enter reports whether the calling test runs in its private network
// namespace (see the package doc). It skips the test, naming what is
// missing, when the process is not root or unshare or ip is absent or
// refused.
func Enter(t *testing.T) bool {
	t.Helper()
	if os.Getenv(envVar) == t.Name() {
		IP(t, "link", "set", "lo", "up")
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test runs in a private network namespace (unshare --net)")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skipf("unshare not found (util-linux): %v", err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skipf("ip not found (iproute2): %v", err)
	}
	if out, err := exec.Command(unshare, "--net", "true").CombinedOutput(); err != nil {
		t.Skipf("unshare --net refused (no CAP_SYS_ADMIN here?): %v %s", err, out)
	}
	cmd := exec.CommandContext(t.Context(), unshare, "--net", "--", os.Args[0],
		"-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1", "-test.v", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), envVar+"="+t.Name())
	out, err := cmd.CombinedOutput()
	switch {
	case err != nil:
		t.Fatalf("%s in a private network namespace: %v\n%s", t.Name(), err, out)
	case strings.Contains(string(out), "--- SKIP: "+t.Name()+" "):
		t.Skipf("skipped in the network namespace:\n%s", out)
	case !strings.Contains(string(out), "--- PASS: "+t.Name()+" "):
		t.Fatalf("%s did not run in the network namespace:\n%s", t.Name(), out)
	}
	t.Logf("in a private network namespace:\n%s", out)
	return false
}

// IP runs ip(8) with args in the namespace, failing the test on an error.
// It refuses to run outside one (before Enter reported true).
func IP(t testing.TB, args ...string) {
	t.Helper()
	if os.Getenv(envVar) == "" {
		t.Fatal("testnetns.IP outside a private network namespace: call Enter first")
	}
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// HasIPv6 reports whether the kernel has IPv6 (it may be disabled at
// boot).
func HasIPv6() bool {
	_, err := os.Stat("/proc/net/if_inet6")
	return err == nil
}

// AddAddr puts addr (a host address, /32 or /128) on lo in the namespace
// and returns once the kernel delivers it locally: an IPv6 address,
// added without duplicate address detection, gets its local route a
// moment after ip returns.
func AddAddr(t testing.TB, addr string) {
	t.Helper()
	a := netip.MustParseAddr(addr)
	args := []string{"addr", "add", netip.PrefixFrom(a, a.BitLen()).String(), "dev", "lo"}
	if a.Is6() {
		args = append(args, "nodad")
	}
	IP(t, args...)
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := exec.Command("ip", "route", "get", addr).CombinedOutput()
		if err == nil && strings.HasPrefix(string(out), "local ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s added to lo is not delivered locally after 5s: ip route get: %v %s", addr, err, out)
		}
		time.Sleep(time.Millisecond)
	}
}
