package auth

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/crypto/bcrypt"
)

// Challenge is the Proxy-Authenticate value of a 407 response.
const Challenge = `Basic realm="proxyd"`

const (
	// cacheSize is the number of successful verifications remembered.
	cacheSize = 10_000
	// bcryptLen is the length of every bcrypt hash: "$2y$" + "NN$" + 22
	// salt + 31 hash characters.
	bcryptLen = 60
	// minCost and maxCost are the costs htpasswd -B accepts (-C 4..17).
	// The upper bound also keeps a typo from making every Check, and the
	// dummy hash made at Parse, take hours.
	minCost = 4
	maxCost = 17
)

// Users is a parsed htpasswd file. The zero value has no users and is not
// usable; build one with [Load] or [Parse].
//
// Users is safe for concurrent use. It is immutable except for its
// verification cache; a reload builds a new Users (and so a new cache).
type Users struct {
	users map[string][]byte // name → bcrypt hash
	dummy []byte            // hash compared against for unknown users; nil when there are no users

	cache *lru.Cache[[sha256.Size]byte, cacheEntry]
	sem   chan struct{} // bounds concurrent bcrypt comparisons

	// compare verifies a password against a bcrypt hash; tests wrap it to
	// count bcrypt calls. Set before first use, never changed after.
	compare func(hash, pw []byte) error
}

// cacheEntry is a successful verification: the digest of name and password
// and the user's hash it was verified against.
type cacheEntry struct {
	digest [sha256.Size]byte
	hash   []byte
}

// Load reads and parses the htpasswd file at path. See [Parse] for the
// format and errors; a file that cannot be read gives
// "auth.htpasswd: open ...".
func Load(path string) (*Users, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth.htpasswd: %w", err)
	}
	return Parse(path, data)
}

// Parse is [Load] for content already read; name is the file name used in
// errors. A bad line gives an error such as
// "auth.htpasswd: /etc/proxyd/htpasswd:3: not name:hash". Parse generates
// the dummy hash used for unknown users, which costs one bcrypt at the
// highest cost in the file.
func Parse(name string, data []byte) (*Users, error) {
	users, cost, err := parseLines(name, data)
	if err != nil {
		return nil, err
	}
	u := &Users{
		users:   users,
		sem:     make(chan struct{}, runtime.GOMAXPROCS(0)),
		compare: bcrypt.CompareHashAndPassword,
	}
	if len(users) > 0 {
		// The password is irrelevant: an unknown user is refused whatever
		// the comparison says. Only the cost matters.
		u.dummy, err = bcrypt.GenerateFromPassword([]byte("proxyd unknown user"), cost)
		if err != nil {
			return nil, fmt.Errorf("auth.htpasswd: %s: dummy hash: %w", name, err)
		}
	}
	u.cache, err = lru.New[[sha256.Size]byte, cacheEntry](cacheSize)
	if err != nil {
		return nil, fmt.Errorf("auth.htpasswd: %w", err) // only for a size <= 0
	}
	return u, nil
}

// parseLines parses the file's lines into name → hash and returns the
// highest bcrypt cost seen. It is Parse without the (slow) dummy hash.
func parseLines(name string, data []byte) (map[string][]byte, int, error) {
	users := make(map[string][]byte)
	highest := minCost
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line) // also drops the '\r' of CRLF
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		bad := func(reason string) error {
			return fmt.Errorf("auth.htpasswd: %s:%d: %s", name, i+1, reason)
		}
		user, hash, found := bytes.Cut(line, []byte(":"))
		switch {
		case !found || len(hash) == 0:
			return nil, 0, bad("not name:hash")
		case len(user) == 0:
			return nil, 0, bad("empty name")
		case bytes.ContainsFunc(user, isControl):
			return nil, 0, bad("name contains a control character")
		}
		cost, reason := checkHash(hash)
		if reason != "" {
			return nil, 0, bad(reason)
		}
		if _, dup := users[string(user)]; dup {
			return nil, 0, bad("duplicate user " + strconv.Quote(string(user)))
		}
		users[string(user)] = bytes.Clone(hash)
		highest = max(highest, cost)
	}
	return users, highest, nil
}

// checkHash returns the cost of a bcrypt hash, or why it is not one. The
// reason never quotes the hash.
func checkHash(hash []byte) (cost int, reason string) {
	const notBcrypt = "hash is not bcrypt ($2y$, $2a$ or $2b$); create it with htpasswd -B"
	if len(hash) < 4 || hash[0] != '$' || hash[1] != '2' || hash[3] != '$' ||
		(hash[2] != 'y' && hash[2] != 'a' && hash[2] != 'b') {
		return 0, notBcrypt
	}
	if len(hash) != bcryptLen || !isDigit(hash[4]) || !isDigit(hash[5]) || hash[6] != '$' ||
		bytes.ContainsFunc(hash[7:], notBcryptBase64) {
		return 0, "malformed bcrypt hash"
	}
	cost = int(hash[4]-'0')*10 + int(hash[5]-'0')
	if cost < minCost || cost > maxCost {
		return 0, fmt.Sprintf("bcrypt cost %d is outside %d..%d", cost, minCost, maxCost)
	}
	return cost, ""
}

// notBcryptBase64 reports whether r is outside bcrypt's base64 alphabet
// (./A-Za-z0-9).
func notBcryptBase64(r rune) bool {
	return !(r == '.' || r == '/' || 'A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9')
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// Len is the number of users.
func (u *Users) Len() int { return len(u.users) }

// Check parses a Proxy-Authorization header value ("Basic " followed by
// base64 of name:password, RFC 7617) and verifies it, returning the user
// name when the credentials are valid. The password is everything after the
// first ':', so it may itself contain ':'.
//
// ok is false for an empty header, a scheme other than Basic (compared
// case-insensitively), bad base64, credentials without ':', an unknown user
// or a wrong password. An unknown user costs the same bcrypt as a wrong
// password. Check may wait for a free bcrypt slot; a cached success does
// not.
func (u *Users) Check(header string) (user string, ok bool) {
	var buf [192]byte // decoded credentials stay on the stack and are wiped
	raw, ok := decodeBasic(header, buf[:0])
	defer clear(raw)
	// RFC 7617 §2: the user-id cannot contain ':', the password can.
	name, password, ok := bytes.Cut(raw, []byte(":"))
	if !ok || u.dummy == nil { // nil dummy: no users at all
		return "", false
	}
	digest := cacheKey(raw, len(name))

	// Look the cache up before the user, so known and unknown names take
	// the same path up to the bcrypt.
	entry, hit := u.cache.Get(digest)
	hash, known := u.users[string(name)]
	if hit && known &&
		subtle.ConstantTimeCompare(entry.digest[:], digest[:]) == 1 &&
		subtle.ConstantTimeCompare(entry.hash, hash) == 1 {
		return string(name), true
	}

	against := hash
	if !known {
		against = u.dummy
	}
	pw := bytes.Clone(password) // compare may keep it; raw must not escape
	u.sem <- struct{}{}
	err := u.compare(against, pw)
	<-u.sem
	clear(pw)
	if err != nil || !known {
		return "", false
	}
	u.cache.Add(digest, cacheEntry{digest: digest, hash: hash})
	return string(name), true
}

// decodeBasic returns the decoded credentials ("name:password") of a Basic
// Proxy-Authorization value, appended to buf, or ok false when the value is
// not Basic or not valid base64. Like net/http's Request.BasicAuth, it
// requires padded standard base64.
func decodeBasic(header string, buf []byte) (raw []byte, ok bool) {
	scheme, cred, found := strings.Cut(strings.TrimSpace(header), " ")
	// RFC 9110 §11.1: the auth-scheme is case-insensitive.
	if !found || !strings.EqualFold(scheme, "Basic") {
		return nil, false
	}
	raw, err := base64.StdEncoding.AppendDecode(buf, []byte(strings.TrimLeft(cred, " ")))
	if err != nil {
		clear(raw)
		return nil, false
	}
	return raw, true
}

// cacheKey is SHA-256(name + "\x00" + password) for raw = name + ":" +
// password with the ':' at colon. Names in the file cannot contain NUL, and a
// hit also requires the user's current hash, so a name with a NUL in a
// header cannot borrow another user's entry.
func cacheKey(raw []byte, colon int) [sha256.Size]byte {
	raw[colon] = 0
	d := sha256.Sum256(raw)
	raw[colon] = ':'
	return d
}
