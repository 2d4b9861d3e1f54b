// Package auth implements proxy authentication (docs/configuration.md,
// "Clients: `auth`, `clients`, `fairness`"): an htpasswd file of bcrypt
// hashes, checked against the Basic credentials of a request's
// Proxy-Authorization header (RFC 9110 §11.7.1, RFC 7617).
//
// # File format
//
// The file named by auth.htpasswd holds one user per line, as written by
// `htpasswd -B`:
//
//	# comment
//	alice:$2y$05$...
//	bob:$2b$10$...
//
// Blank lines and lines whose first non-blank character is '#' are skipped;
// CRLF line ends are accepted. The name is everything before the first ':'
// (so a name cannot contain ':'); it must not be empty, contain a control
// character or repeat an earlier name. The hash must be bcrypt ($2y$, $2a$ or
// $2b$, 60 characters, cost 4..17 as htpasswd -B allows). Anything else, in
// particular the $apr1$/$1$ MD5, {SHA} and crypt(3) hashes htpasswd writes
// without -B, makes [Load] fail with the file name, the line number and the
// reason. Errors never quote a hash. An empty file is valid: nobody can then
// authenticate.
//
// # Why a cache
//
// bcrypt is deliberately slow (~50-100 ms at cost 10), far too slow to run on
// every request. [Users.Check] therefore remembers successful verifications
// in an LRU of 10,000 entries keyed by SHA-256(name + "\x00" + password);
// the password itself is never stored. Each entry holds the hash it was
// verified against, and a hit counts only when that hash is still the user's
// hash. Users is rebuilt on every reload, which also drops the cache, so a
// changed or removed user loses its cached credentials at once.
//
// Failed verifications are never cached: every wrong password costs a full
// bcrypt. To bound the CPU a client can burn that way, at most
// runtime.GOMAXPROCS(0) bcrypt comparisons run at once; further callers wait
// for a slot.
//
// # What is constant-time
//
//   - Password verification is bcrypt's, which compares digests with
//     crypto/subtle.
//   - An unknown user costs the same as a wrong password: its password is
//     compared with a dummy bcrypt hash generated at [Parse] with the highest
//     cost found in the file.
//   - A cache hit compares the SHA-256 digest and the stored hash with
//     crypto/subtle.ConstantTimeCompare. The cache is looked up before the
//     user is, for known and unknown names alike.
//
// The user-name lookup itself is an ordinary map lookup; the name is not the
// secret, and its timing is dwarfed by the bcrypt that follows a miss.
//
// # Credentials never leave
//
// This package neither logs nor returns passwords, and its errors carry no
// hashes. Removing Proxy-Authorization before a request is forwarded
// upstream, and not logging its value, is the caller's job: the proxy strips
// the header after calling [Users.Check] (RFC 9110 §11.7.1: the
// credentials are consumed by the proxy that asked for them).
package auth
