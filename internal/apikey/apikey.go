// Package apikey makes and recognises agent API keys.
//
// A key is "crk_" followed by the unpadded base64url encoding of 32 bytes
// from crypto/rand (47 characters in all). Only its SHA-256 hash is stored;
// the first PrefixLen characters are kept in clear so an operator can tell
// keys apart in listings without being able to use them.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
)

// Scheme is the prefix every agent key starts with.
const Scheme = "crk_"

// PrefixLen is how many leading characters of a key are stored in clear.
const PrefixLen = 12

// secretBytes is the key's entropy.
const secretBytes = 32

// Generate returns a new key, its SHA-256 hash and its clear prefix.
func Generate() (key string, hash []byte, prefix string, err error) {
	var b [secretBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, "", fmt.Errorf("generate key: %w", err)
	}
	key = Scheme + base64.RawURLEncoding.EncodeToString(b[:])
	return key, Hash(key), key[:PrefixLen], nil
}

// Hash returns the SHA-256 hash under which key is stored.
func Hash(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// LooksValid reports whether key has the shape of an agent key, so a
// caller can refuse garbage before touching the store.
func LooksValid(key string) bool {
	rest, ok := strings.CutPrefix(key, Scheme)
	if !ok || len(rest) != base64.RawURLEncoding.EncodedLen(secretBytes) {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(rest)
	return err == nil
}
