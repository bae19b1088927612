// Package jsoncheck refuses JSON that a reader and a relay could read two
// ways: repeated object keys (exactly, or differing only in letter case),
// and nesting deep enough to exhaust a recursive validator's stack.
package jsoncheck

import (
	"encoding/json"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of arrays and objects Check accepts. Real MCP traffic nests a few dozen levels at most;
// the bound keeps validation (which recurses) from exhausting the stack on
// a hostile message such as eight million '['.
const MaxDepth = 512

// Check rejects a JSON document that a proxy reading it with gjson could
// read differently from the process it relays it to: nesting deeper than MaxDepth, or an object
// that repeats a key. Decoders disagree on repeated keys — gjson, which the
// proxy reads with, takes the first, while Go's encoding/json, JavaScript and
// Python take the last — so a client could otherwise show the proxy a "ping"
// or a cheap model and have the upstream run a metered or costly one.
//
// It is iterative, allocates only for objects, and does not itself validate
// the JSON: callers validate after it, once the depth is known to be safe.
// On invalid input it may return nil or an error; either way the validation
// that follows rejects the message.
//
// With dupKeys false only the depth is checked, for documents the proxy
// relays rather than judges.
func Check(raw []byte, dupKeys bool) error {
	type frame struct {
		object    bool
		expectKey bool
		// keys maps each key's folded form to the key as decoded.
		keys map[string]string
	}
	var stack []frame
	var fold []byte
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '{', '[':
			if len(stack) >= MaxDepth {
				return &Error{Msg: fmt.Sprintf("nesting deeper than %d levels", MaxDepth)}
			}
			stack = append(stack, frame{object: raw[i] == '{', expectKey: raw[i] == '{'})
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case ',':
			if n := len(stack); n > 0 && stack[n-1].object {
				stack[n-1].expectKey = true
			}
		case '"':
			start := i
			escaped := false
			for i++; i < len(raw); i++ {
				if raw[i] == '\\' {
					escaped = true
					i++
					continue
				}
				if raw[i] == '"' {
					break
				}
			}
			n := len(stack)
			if !dupKeys || n == 0 || !stack[n-1].object || !stack[n-1].expectKey || i >= len(raw) {
				continue
			}
			top := &stack[n-1]
			top.expectKey = false
			key := string(raw[start+1 : i])
			if escaped || !utf8.ValidString(key) {
				// "\u006dethod" is "method" to every decoder, and
				// encoding/json reads each invalid byte as U+FFFD.
				if err := json.Unmarshal(raw[start:i+1], &key); err != nil {
					continue
				}
			}
			if top.keys == nil {
				top.keys = make(map[string]string, 4)
			}
			fold = foldKey(fold[:0], key)
			fk := key
			if string(fold) != key {
				fk = string(fold)
			}
			if prev, dup := top.keys[fk]; dup {
				if prev == key {
					return &Error{Msg: fmt.Sprintf("duplicate key %q", key), DuplicateKey: key}
				}
				return &Error{
					Msg:          fmt.Sprintf("duplicate key %q: equal to %q under Unicode case folding, so a case-insensitive decoder reads both as one key", key, prev),
					DuplicateKey: key, FoldsTo: prev,
				}
			}
			top.keys[fk] = key
		}
	}
	return nil
}

// Error is why Check refused a document.
type Error struct {
	Msg string
	// DuplicateKey is the repeated key; "" for a depth error.
	DuplicateKey string
	// FoldsTo is the earlier key DuplicateKey equals under case folding
	// when the two are spelt differently; "" for an exact repeat.
	FoldsTo string
}

func (e *Error) Error() string { return e.Msg }

// foldKey appends to dst the canonical form of key under simple case
// folding: every rune replaced by the smallest rune of its folding orbit,
// as encoding/json folds names, then ASCII letters lower-cased, so that the
// usual lower-case key is its own form and costs no second string. Two keys
// are equal to encoding/json exactly when their forms are. Invalid UTF-8
// folds to U+FFFD, which is what encoding/json decodes it to.
func foldKey(dst []byte, key string) []byte {
	for i := 0; i < len(key); {
		c := key[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(key[i:])
		i += n
		r = foldRune(r)
		if 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		dst = utf8.AppendRune(dst, r)
	}
	return dst
}

// foldRune is the smallest rune of r's simple folding orbit.
func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}
