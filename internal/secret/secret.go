// Package secret owns the high-entropy credentials onboard hands out (tenant
// API keys and invitation tokens) and the one-way hash under which they are
// stored. Both are 32 random bytes, so a plain SHA-256 is enough to make a
// stolen database useless for logging in, and it keeps lookups indexable.
package secret

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// APIKeyPrefix marks onboard API keys so that secret scanners and humans can
// recognise one.
const APIKeyPrefix = "obk_"

// NewToken returns a URL-safe token of 32 random bytes and its hash.
func NewToken() (token string, hash []byte) {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error since Go 1.24
	token = base64.RawURLEncoding.EncodeToString(b[:])
	return token, Hash(token)
}

// NewAPIKey returns a new tenant API key and its hash.
func NewAPIKey() (key string, hash []byte) {
	t, _ := NewToken()
	key = APIKeyPrefix + t
	return key, Hash(key)
}

// Hash is the stored form of a token or key.
func Hash(s string) []byte {
	h := sha256.Sum256([]byte(strings.TrimSpace(s)))
	return h[:]
}
