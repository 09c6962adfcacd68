package secret

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

func TestNewTokenIsRandomURLSafeAndHashed(t *testing.T) {
	t.Parallel()
	a, ha := NewToken()
	b, hb := NewToken()
	if a == b || bytes.Equal(ha, hb) {
		t.Fatal("two tokens are equal")
	}
	raw, err := base64.RawURLEncoding.DecodeString(a)
	if err != nil || len(raw) != 32 {
		t.Fatalf("token %q is not 32 URL-safe base64 bytes: %v", a, err)
	}
	if !bytes.Equal(ha, Hash(a)) || bytes.Contains(ha, []byte(a)) {
		t.Fatal("hash does not match the token")
	}
}

func TestAPIKeyHasPrefix(t *testing.T) {
	t.Parallel()
	k, h := NewAPIKey()
	if !strings.HasPrefix(k, APIKeyPrefix) || !bytes.Equal(h, Hash(k)) {
		t.Fatalf("bad key %q", k)
	}
}
