package mcp

import (
	"errors"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

func TestSetPath(t *testing.T) {
	price := []string{"_meta", gjsonKey(PriceMetaKey)}
	tests := []struct {
		name, in string
		path     []string
		val      string
		want     string
		wantErr  bool
	}{
		{"new _meta appended", `{"name":"a","x":[1]}`, price, `{"p":1}`, `{"name":"a","x":[1],"_meta":{"dev.caracal/price":{"p":1}}}`, false},
		{"into existing _meta", `{"name":"a","_meta":{"o":1} }`, price, `2`, `{"name":"a","_meta":{"o":1,"dev.caracal/price":2} }`, false},
		{"into empty _meta", `{"_meta":{ }}`, price, `2`, `{"_meta":{ "dev.caracal/price":2}}`, false},
		{"replaces in place", `{"_meta":{"dev.caracal/price":{"old":true},"z":0}}`, price, `3`, `{"_meta":{"dev.caracal/price":3,"z":0}}`, false},
		{"empty object", `{}`, price, `1`, `{"_meta":{"dev.caracal/price":1}}`, false},
		{"top-level key", `{"id":7,"m":"x"}`, []string{"id"}, `"caracal-s-1"`, `{"id":"caracal-s-1","m":"x"}`, false},
		{"unicode and escapes kept", `{"d":"é\"\\n","name":"t"}`, []string{"name"}, `"s__t"`, `{"d":"é\"\\n","name":"s__t"}`, false},
		{"_meta not an object", `{"_meta":[1]}`, price, `1`, ``, true},
		{"_meta a number", `{"_meta":5}`, price, `1`, ``, true},
		{"not an object", `[1]`, []string{"id"}, `1`, ``, true},
		{"whitespace and order kept", "{ \"id\" : 7 ,\n \"params\" : { \"name\" : \"a__b\" , \"arguments\" : {\"x\":1.50} } }", []string{"params", "name"}, `"b"`,
			"{ \"id\" : 7 ,\n \"params\" : { \"name\" : \"b\" , \"arguments\" : {\"x\":1.50} } }", false},
		{"new nested key", `{"id":1,"params":{"a":"\u00e9"}}`, []string{"params", "_meta", "k"}, `true`, `{"id":1,"params":{"a":"\u00e9","_meta":{"k":true}}}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := []byte(tc.in)
			got, err := setPath(src, tc.path, []byte(tc.val))
			if string(src) != tc.in {
				t.Errorf("src changed to %s", src)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			if !tc.wantErr && string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestLineReader(t *testing.T) {
	long := strings.Repeat("x", 100)
	r := newLineReader(strings.NewReader("\n{\"a\":1}\r\n  \n"+long+"\n{\"b\":2}"), 64)
	want := []string{`{"a":1}`, "too large", `{"b":2}`, "EOF"}
	for _, w := range want {
		line, err := r.next()
		var tl *TooLargeError
		switch {
		case errors.As(err, &tl):
			if w != "too large" || tl.Size != 101 {
				t.Errorf("got too large (%d bytes), want %s", tl.Size, w)
			}
		case err != nil:
			if w != "EOF" {
				t.Errorf("got %v, want %s", err, w)
			}
		default:
			if string(line) != w {
				t.Errorf("got %q, want %s", line, w)
			}
		}
	}
}

func TestSanitizeName(t *testing.T) {
	for in, want := range map[string]string{
		"mcp-servers/everything": "mcp-servers-everything",
		"Fake Server":            "fake-server",
		"a__b":                   "a_b",
		"":                       "upstream",
		"  ":                     "upstream",
	} {
		if got := SanitizeName(in); got != want {
			t.Errorf("SanitizeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCanonicalID(t *testing.T) {
	tests := []struct{ a, b string }{
		{`{"id":"é1"}`, `{"id":"\u00e91"}`},
		{`{"id":"<a&b>"}`, `{"id":"\u003ca\u0026b\u003e"}`},
		{`{"id":"x\"y"}`, `{"id":"x\u0022y"}`},
		{`{"id":7}`, `{"id":7}`},
		{"{\"id\":\"a\u2028b\"}", `{"id":"a\u2028b"}`},
	}
	for _, tc := range tests {
		a := canonicalID(gjson.Get(tc.a, "id"))
		b := canonicalID(gjson.Get(tc.b, "id"))
		if a != b {
			t.Errorf("canonicalID: %s and %s differ: %s vs %s", tc.a, tc.b, a, b)
		}
		if !gjson.Valid(a) || gjson.Parse(a).Value() != gjson.Get(tc.a, "id").Value() {
			t.Errorf("canonicalID(%s) = %s is not the same id", tc.a, a)
		}
	}
}
