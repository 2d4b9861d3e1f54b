package auth

import (
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// htpasswdY is a line as `htpasswd -B -C 5` writes it: generated with
// bcrypt at cost 5 (password "correct horse") and its $2a$ prefix rewritten
// to $2y$.
const htpasswdY = "carol:$2y$05$nYKZ6svehVblZGAOQHRZHey64V6qFgonRS.axOGM4qwABeYaEWOmu"

// hashFor returns a MinCost bcrypt hash of pw with the given prefix
// ("$2a$", "$2b$" or "$2y$").
func hashFor(t testing.TB, pw, prefix string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return prefix + string(h[4:])
}

func basic(name, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(name+":"+pw))
}

// countingUsers parses content and wraps its bcrypt comparison to count
// calls.
func countingUsers(t testing.TB, content string) (*Users, *atomic.Int64) {
	t.Helper()
	u, err := Parse("test", []byte(content))
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	inner := u.compare
	u.compare = func(hash, pw []byte) error {
		n.Add(1)
		return inner(hash, pw)
	}
	return u, &n
}

func TestParseGood(t *testing.T) {
	alice := hashFor(t, "alice-pw", "$2a$")
	bob := hashFor(t, "bob-pw", "$2b$")
	content := strings.Join([]string{
		"# proxyd users",
		"",
		"alice:" + alice,
		"   ",
		"  # indented comment",
		"bob:" + bob + "\r",
		htpasswdY + "\r",
		"",
	}, "\n")
	u, err := Parse("/etc/proxyd/htpasswd", []byte(content))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if u.Len() != 3 {
		t.Fatalf("Len = %d, want 3", u.Len())
	}
	for name, pw := range map[string]string{"alice": "alice-pw", "bob": "bob-pw", "carol": "correct horse"} {
		if got, ok := u.Check(basic(name, pw)); !ok || got != name {
			t.Errorf("Check(%s) = %q, %v; want %q, true", name, got, ok, name)
		}
	}
}

func TestParseEmpty(t *testing.T) {
	for _, content := range []string{"", "\n\n", "# nobody\r\n"} {
		u, err := Parse("empty", []byte(content))
		if err != nil {
			t.Fatalf("Parse(%q): %v", content, err)
		}
		if u.Len() != 0 {
			t.Errorf("Parse(%q).Len() = %d", content, u.Len())
		}
		if _, ok := u.Check(basic("alice", "x")); ok {
			t.Errorf("Check on an empty file succeeded")
		}
	}
}

func TestParseErrors(t *testing.T) {
	good := hashFor(t, "pw", "$2y$")
	tests := []struct {
		name    string
		content string
		want    string // the whole error
		secret  string // must not appear in the error
	}{
		{"no colon", "# c\n\nbob" + good, "auth.htpasswd: f:3: not name:hash", good},
		{"empty hash", "bob:", "auth.htpasswd: f:1: not name:hash", ""},
		{"empty name", "alice:" + good + "\n:" + good, "auth.htpasswd: f:2: empty name", good},
		{"control in name", "b\x00b:" + good, "auth.htpasswd: f:1: name contains a control character", good},
		{"duplicate", "bob:" + good + "\r\nalice:" + good + "\r\nbob:" + good, `auth.htpasswd: f:3: duplicate user "bob"`, good},
		{"apr1 md5", "bob:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/",
			"auth.htpasswd: f:1: hash is not bcrypt ($2y$, $2a$ or $2b$); create it with htpasswd -B", "HqJZimcKQFAMYayBlzkrA"},
		{"md5 crypt", "bob:$1$saltsalt$qjXMvbEw8oaL.CzflDugX/",
			"auth.htpasswd: f:1: hash is not bcrypt ($2y$, $2a$ or $2b$); create it with htpasswd -B", "qjXMvbEw8oaL"},
		{"sha", "bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
			"auth.htpasswd: f:1: hash is not bcrypt ($2y$, $2a$ or $2b$); create it with htpasswd -B", "W6ph5Mm5Pz8GgiULbPgzG37mj9g"},
		{"plain", "bob:secret", "auth.htpasswd: f:1: hash is not bcrypt ($2y$, $2a$ or $2b$); create it with htpasswd -B", "secret"},
		{"2x prefix", "bob:$2x$" + good[4:], "auth.htpasswd: f:1: hash is not bcrypt ($2y$, $2a$ or $2b$); create it with htpasswd -B", good[7:]},
		{"truncated", "bob:" + good[:59], "auth.htpasswd: f:1: malformed bcrypt hash", good[7:59]},
		{"bad alphabet", "bob:" + good[:59] + "!", "auth.htpasswd: f:1: malformed bcrypt hash", good[7:59]},
		{"bad cost digits", "bob:$2y$1x" + good[6:], "auth.htpasswd: f:1: malformed bcrypt hash", good[7:]},
		{"cost too high", "bob:$2y$31" + good[6:], "auth.htpasswd: f:1: bcrypt cost 31 is outside 4..17", good[7:]},
		{"cost too low", "bob:$2y$03" + good[6:], "auth.htpasswd: f:1: bcrypt cost 3 is outside 4..17", good[7:]},
		{"htdigest extra field", "bob:realm:" + good, "auth.htpasswd: f:1: hash is not bcrypt ($2y$, $2a$ or $2b$); create it with htpasswd -B", good[7:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := Parse("f", []byte(tt.content))
			if err == nil {
				t.Fatalf("Parse succeeded with %d users", u.Len())
			}
			if err.Error() != tt.want {
				t.Errorf("error = %q\nwant    %q", err, tt.want)
			}
			if tt.secret != "" && strings.Contains(err.Error(), tt.secret) {
				t.Errorf("error %q quotes the hash", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(path, []byte(htpasswdY+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got, ok := u.Check(basic("carol", "correct horse")); !ok || got != "carol" {
		t.Errorf("Check = %q, %v", got, ok)
	}

	if err := os.WriteFile(path, []byte("\nbob\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || err.Error() != "auth.htpasswd: "+path+":2: not name:hash" {
		t.Errorf("Load(bad) error = %v", err)
	}

	missing := filepath.Join(dir, "missing")
	_, err = Load(missing)
	if err == nil || !strings.HasPrefix(err.Error(), "auth.htpasswd: open "+missing) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) error = %v", err)
	}
}

func TestCheck(t *testing.T) {
	u, calls := countingUsers(t, "alice:"+hashFor(t, "s3cret", "$2y$")+"\n"+
		"bob:"+hashFor(t, "pa:ss:word", "$2b$")+"\n"+
		"eve:"+hashFor(t, "", "$2a$")+"\n")
	b64 := base64.StdEncoding.EncodeToString
	tests := []struct {
		name   string
		header string
		user   string // "" for refused
		bcrypt int64  // bcrypt comparisons this check must cost
	}{
		{"empty", "", "", 0},
		{"only scheme", "Basic", "", 0},
		{"bearer", "Bearer x", "", 0},
		{"digest", `Digest username="alice"`, "", 0},
		{"bad base64", "Basic !!!", "", 0},
		{"unpadded base64", "Basic " + strings.TrimRight(b64([]byte("alice:s3cre")), "="), "", 0},
		{"no colon", "Basic " + b64([]byte("alices3cret")), "", 0},
		{"valid", basic("alice", "s3cret"), "alice", 1},
		{"valid again is cached", basic("alice", "s3cret"), "alice", 0},
		{"lower-case scheme", "basic " + b64([]byte("alice:s3cret")), "alice", 0},
		{"upper-case scheme, extra spaces", "  BASIC   " + b64([]byte("alice:s3cret")) + " ", "alice", 0},
		{"wrong password after cached", basic("alice", "s3creT"), "", 1},
		{"wrong password again", basic("alice", "s3creT"), "", 1},
		{"prefix of password", basic("alice", "s3cre"), "", 1},
		{"unknown user", basic("mallory", "s3cret"), "", 1},
		{"unknown user again", basic("mallory", "s3cret"), "", 1},
		{"empty name", basic("", "s3cret"), "", 1},
		{"name case matters", basic("Alice", "s3cret"), "", 1},
		{"password with colons", basic("bob", "pa:ss:word"), "bob", 1},
		{"password with colons cached", basic("bob", "pa:ss:word"), "bob", 0},
		{"colon split at first", "Basic " + b64([]byte("bob:pa:ss")), "", 1},
		{"empty password", basic("eve", ""), "eve", 1},
		{"NUL shifted into name", basic("alice\x00s3cre", "t"), "", 1},
	}
	for _, tt := range tests {
		before := calls.Load()
		user, ok := u.Check(tt.header)
		if ok != (tt.user != "") || user != tt.user {
			t.Errorf("%s: Check(%q) = %q, %v; want %q", tt.name, tt.header, user, ok, tt.user)
		}
		if got := calls.Load() - before; got != tt.bcrypt {
			t.Errorf("%s: %d bcrypt comparisons, want %d", tt.name, got, tt.bcrypt)
		}
	}
}

// TestUnknownUserUsesDummy checks that an unknown user is compared against a
// hash of the file's highest cost, so it costs what a wrong password does.
func TestUnknownUserUsesDummy(t *testing.T) {
	u, _ := countingUsers(t, "a:"+hashFor(t, "x", "$2y$")+"\n"+htpasswdY+"\n")
	var got []byte
	inner := u.compare
	u.compare = func(hash, pw []byte) error {
		got = hash
		return inner(hash, pw)
	}
	u.Check(basic("nobody", "x"))
	if cost, err := bcrypt.Cost(got); err != nil || cost != 5 {
		t.Errorf("unknown user compared against cost %d (%v), want 5", cost, err)
	}
}

// TestCacheInvalidatedByHash checks that a cache entry counts only while the
// user's hash is the one it was verified against.
func TestCacheInvalidatedByHash(t *testing.T) {
	u, calls := countingUsers(t, "alice:"+hashFor(t, "old", "$2y$")+"\n")
	if _, ok := u.Check(basic("alice", "old")); !ok {
		t.Fatal("old password refused")
	}
	// Same cache, new hash: what a reload that kept the cache would see.
	u.users["alice"] = []byte(hashFor(t, "new", "$2y$"))
	before := calls.Load()
	if _, ok := u.Check(basic("alice", "old")); ok {
		t.Error("old password still accepted after the hash changed")
	}
	if calls.Load()-before != 1 {
		t.Error("stale cache entry was not re-verified with bcrypt")
	}
	if _, ok := u.Check(basic("alice", "new")); !ok {
		t.Error("new password refused")
	}
}

func TestCheckConcurrent(t *testing.T) {
	u, calls := countingUsers(t, "alice:"+hashFor(t, "a", "$2y$")+"\n"+"bob:"+hashFor(t, "b", "$2b$")+"\n")
	const goroutines, rounds = 50, 10
	var wg sync.WaitGroup
	errs := make(chan string, goroutines*(rounds+1))
	for g := range goroutines {
		wg.Go(func() {
			for i := range rounds {
				name, pw := "alice", "a"
				if (g+i)%2 == 1 {
					name, pw = "bob", "b"
				}
				if got, ok := u.Check(basic(name, pw)); !ok || got != name {
					errs <- name + " refused"
				}
			}
			if _, ok := u.Check(basic("alice", "wrong")); ok {
				errs <- "alice accepted a wrong password"
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	// Every wrong password costs a bcrypt; a right one costs at most one per
	// goroutine and user (after its own success the entry is cached).
	if n := calls.Load(); n < goroutines || n > 3*goroutines {
		t.Errorf("%d bcrypt comparisons, want within [%d, %d]", n, goroutines, 3*goroutines)
	}
}

// TestSemaphoreBoundsBcrypt checks that no more than cap(sem) comparisons
// run at once.
func TestSemaphoreBoundsBcrypt(t *testing.T) {
	u, _ := countingUsers(t, "alice:"+hashFor(t, "a", "$2y$")+"\n")
	var running, peak atomic.Int64
	inner := u.compare
	u.compare = func(hash, pw []byte) error {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		defer running.Add(-1)
		return inner(hash, pw)
	}
	var wg sync.WaitGroup
	for range 4 * cap(u.sem) {
		wg.Go(func() { u.Check(basic("alice", "wrong")) })
	}
	wg.Wait()
	if p := peak.Load(); p > int64(cap(u.sem)) {
		t.Errorf("%d concurrent bcrypt comparisons, limit %d", p, cap(u.sem))
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(htpasswdY + "\n# c\r\nbob:$2b$04$" + strings.Repeat("a", 53)))
	f.Add([]byte("bob:{SHA}x\n"))
	f.Add([]byte(":\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		users, cost, err := parseLines("f", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "auth.htpasswd: f:") {
				t.Fatalf("error %q lacks file and line", err)
			}
			return
		}
		if cost < minCost || cost > maxCost {
			t.Fatalf("cost %d", cost)
		}
		for name, hash := range users {
			if name == "" || strings.ContainsAny(name, ":\x00") {
				t.Fatalf("bad name %q accepted", name)
			}
			if _, err := bcrypt.Cost(hash); err != nil {
				t.Fatalf("bad hash accepted: %v", err)
			}
		}
	})
}

func FuzzDecodeBasic(f *testing.F) {
	f.Add(basic("alice", "pw"))
	f.Add("basic Og==")
	f.Add("Bearer x")
	f.Fuzz(func(t *testing.T, header string) {
		raw, ok := decodeBasic(header, nil)
		if !ok {
			return
		}
		raw2, ok2 := decodeBasic("Basic "+base64.StdEncoding.EncodeToString(raw), make([]byte, 0, 4))
		if !ok2 || string(raw2) != string(raw) {
			t.Fatalf("round trip of %q gave %q %v", raw, raw2, ok2)
		}
	})
}

func BenchmarkCheckCached(b *testing.B) {
	h, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.DefaultCost)
	if err != nil {
		b.Fatal(err)
	}
	u, err := Parse("bench", []byte("alice:"+string(h)+"\n"))
	if err != nil {
		b.Fatal(err)
	}
	header := basic("alice", "s3cret")
	if _, ok := u.Check(header); !ok {
		b.Fatal("refused")
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := u.Check(header); !ok {
			b.Fatal("refused")
		}
	}
}

func BenchmarkCheckUncached(b *testing.B) {
	h, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.DefaultCost)
	if err != nil {
		b.Fatal(err)
	}
	u, err := Parse("bench", []byte("alice:"+string(h)+"\n"))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, header string }{
		{"wrong_password", basic("alice", "wrong")},
		{"unknown_user", basic("mallory", "s3cret")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := u.Check(bc.header); ok {
					b.Fatal("accepted")
				}
			}
		})
	}
}
