package jsoncheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// refCheck is the reference Check for valid JSON, built on encoding/json's
// tokenizer: the deepest nesting and the first key an object repeats (keys
// compared as encoding/json decodes them).
func refCheck(raw []byte) (depth int, dup string, hasDup bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // a number too large for float64 is still valid JSON
	type frame struct {
		object bool
		keys   map[string]bool
		isKey  bool
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return depth, dup, hasDup
		}
		if err != nil {
			panic(fmt.Sprintf("reference tokenizer failed on valid JSON: %v", err))
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].isKey {
			// In an object, tokens alternate key, value.
			k, ok := tok.(string)
			if !ok { // the object's closing brace
				stack = stack[:n-1]
				if n > 1 && stack[n-2].object {
					stack[n-2].isKey = true
				}
				continue
			}
			if stack[n-1].keys[k] && !hasDup {
				dup, hasDup = k, true
			}
			stack[n-1].keys[k] = true
			stack[n-1].isKey = false
			continue
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if n := len(stack); n > 0 && stack[n-1].object {
				stack[n-1].isKey = true
			}
			stack = append(stack, frame{object: tok == json.Delim('{'), keys: map[string]bool{}, isKey: tok == json.Delim('{')})
			depth = max(depth, len(stack))
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if n := len(stack); n > 0 && stack[n-1].object {
				stack[n-1].isKey = true
			}
		default:
			if n := len(stack); n > 0 && stack[n-1].object {
				stack[n-1].isKey = true
			}
		}
	}
}

// FuzzCheck compares Check with encoding/json on every valid document:
// it must refuse exactly the documents that nest deeper than MaxDepth or
// repeat a key, and name the repeated key. Check does not validate, so on
// invalid JSON only the absence of a panic is asserted.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, `{"a":1,"b":[1,2,{"a":2}]}`, `{"a":1,"a":2}`,
		`{"method":"ping","\u006dethod":"tools/call"}`, `{"a":{"b":1},"c":{"b":2}}`,
		`{"k":"v\"","k\"":1}`, `{"":1,"":2}`, `[{"x":1},{"x":1}]`, `{"a":[{"a":1}],"b":"a"}`,
		`"just a string"`, `{"\ud800":1,"\udc00":2}`, `{"é":1,"\u00e9":2}`, `{"\u00e9":1}`,
		strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth),
		strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1),
		`{"a":1,` + "\n" + ` "b" : {"a" :2}, "a"` + "\t" + `:3}`, `{"a`, `{"a":"\`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		err := Check(raw, true)
		depthErr := Check(raw, false)
		if depthErr != nil {
			var e *Error
			if !errors.As(depthErr, &e) || e.DuplicateKey != "" {
				t.Fatalf("Check(dupKeys=false) = %v: want a depth error", depthErr)
			}
		}
		if !json.Valid(raw) {
			return
		}
		depth, dup, hasDup := refCheck(raw)
		if (depth > MaxDepth) != (depthErr != nil) {
			t.Fatalf("Check(dupKeys=false) = %v for depth %d (max %d)", depthErr, depth, MaxDepth)
		}
		if depth > MaxDepth {
			if err == nil {
				t.Fatalf("Check accepted depth %d", depth)
			}
			return
		}
		var e *Error
		switch {
		case hasDup && err == nil:
			t.Fatalf("Check accepted an object repeating key %q", dup)
		case !hasDup && err != nil:
			t.Fatalf("Check = %v, but no key repeats", err)
		case hasDup && (!errors.As(err, &e) || e.DuplicateKey != dup):
			// Both scan in document order, so the first repeat is the same.
			t.Fatalf("Check = %v, want duplicate key %q", err, dup)
		}
	})
}

// escapeAll writes s as a JSON string with every rune as a \u escape, the
// form a client would use to hide a repeated key from a byte comparison.
func escapeAll(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		if r >= 0x10000 {
			r -= 0x10000
			fmt.Fprintf(&b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
			continue
		}
		fmt.Fprintf(&b, `\u%04x`, r)
	}
	b.WriteByte('"')
	return b.String()
}

// FuzzCheckDuplicateKey builds objects that repeat a key — plainly or
// escaped, with other members between, nested in arrays and objects — and
// requires Check to refuse every one, naming the key.
func FuzzCheckDuplicateKey(f *testing.F) {
	f.Add("method", "params", uint8(0), false, true)
	f.Add("model", "", uint8(3), true, false)
	f.Add("é", "e", uint8(1), true, true)
	f.Add("a\"b\\c", "a", uint8(7), false, false)
	f.Add("\xff", "\ufffd", uint8(2), true, true)
	f.Add("", "x", uint8(9), false, true)
	f.Add("😀", "[1,{", uint8(4), true, false)
	f.Fuzz(func(t *testing.T, key, other string, nest uint8, escape, between bool) {
		// encoding/json writes invalid UTF-8 as U+FFFD, rune by rune.
		key = string([]rune(key))
		k1, _ := json.Marshal(key)
		k2 := string(k1)
		if escape {
			k2 = escapeAll(key)
		}
		ov, _ := json.Marshal(other)
		var doc strings.Builder
		levels := int(nest % 16)
		for i := range levels {
			if i%2 == 0 {
				doc.WriteString(`[1,`)
			} else {
				doc.WriteString(`{"n":1,"m":`)
			}
		}
		fmt.Fprintf(&doc, `{%s:1`, k1)
		if between && other != key {
			fmt.Fprintf(&doc, `,%s:{%s:[%s]}`, ov, k1, ov)
		}
		fmt.Fprintf(&doc, `,%s:2}`, k2)
		for i := levels - 1; i >= 0; i-- {
			if i%2 == 0 {
				doc.WriteString(`]`)
			} else {
				doc.WriteString(`}`)
			}
		}
		raw := []byte(doc.String())
		if !json.Valid(raw) || !utf8.Valid(raw) {
			t.Fatalf("test built invalid JSON: %s", raw)
		}
		err := Check(raw, true)
		var e *Error
		if !errors.As(err, &e) || e.DuplicateKey != key {
			t.Fatalf("Check(%s) = %v, want duplicate key %q", raw, err, key)
		}
		if err := Check(raw, false); err != nil {
			t.Fatalf("Check(%s, dupKeys=false) = %v", raw, err)
		}
	})
}
