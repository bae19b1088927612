package cli

import (
	"bytes"
	"testing"

	"github.com/spf13/cobra"
)

func TestPrintRows(t *testing.T) {
	headers := []string{"name", "limit"}
	rows := [][]string{{"bot", "10.00"}, {"a,b", "line\nbreak"}}
	for _, tc := range []struct {
		format string
		want   string
	}{
		{FormatTable, "NAME  LIMIT\nbot   10.00\na,b   line break\n"},
		{FormatCSV, "name,limit\nbot,10.00\n\"a,b\",\"line\nbreak\"\n"},
		{FormatJSON, "[\n  {\n    \"name\": \"bot\"\n  }\n]\n"},
	} {
		var buf bytes.Buffer
		if err := printRows(&buf, tc.format, []map[string]string{{"name": "bot"}}, headers, rows); err != nil {
			t.Fatal(err)
		}
		if buf.String() != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.format, buf.String(), tc.want)
		}
	}
	var buf bytes.Buffer
	if err := printRows(&buf, FormatTable, nil, headers, nil); err != nil || buf.String() != "NAME  LIMIT\n" {
		t.Errorf("empty table: %q, %v", buf.String(), err)
	}
}

func TestPrintJSONKeepsHTML(t *testing.T) {
	var buf bytes.Buffer
	if err := printJSON(&buf, map[string]string{"reason": "a < b & c"}); err != nil {
		t.Fatal(err)
	}
	if want := "{\n  \"reason\": \"a < b & c\"\n}\n"; buf.String() != want {
		t.Errorf("got %q, want %q", buf.String(), want)
	}
}

func TestOutputFlag(t *testing.T) {
	for _, tc := range []struct {
		csv  bool
		args []string
		want string
		err  string
	}{
		{false, nil, "table", ""},
		{false, []string{"-o", "json"}, "json", ""},
		{false, []string{"--output", "table"}, "table", ""},
		{false, []string{"-o", "csv"}, "", `invalid argument "csv" for "-o, --output" flag: unknown format "csv": want table or json`},
		{true, []string{"-o", "csv"}, "csv", ""},
		{true, []string{"-o", "yaml"}, "", `invalid argument "yaml" for "-o, --output" flag: unknown format "yaml": want table, json or csv`},
	} {
		var got string
		cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
		addOutputFlag(cmd, &got, tc.csv)
		cmd.SetArgs(tc.args)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		err := cmd.Execute()
		switch {
		case tc.err != "" && (err == nil || err.Error() != tc.err):
			t.Errorf("%v: error %v, want %s", tc.args, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%v: %q, %v; want %q", tc.args, got, err, tc.want)
		}
	}
}

func TestOrList(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"a"}, "a"},
		{[]string{"a", "b"}, "a or b"},
		{[]string{"a", "b", "c"}, "a, b or c"},
	} {
		if got := orList(tc.in); got != tc.want {
			t.Errorf("orList(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestTableEscapesControlCharacters: text already stored with control
// characters is printed escaped in tables and key-value records, so it
// cannot clear the screen, recolour it or forge a row.
func TestTableEscapesControlCharacters(t *testing.T) {
	tests := []struct{ cell, want string }{
		{"plain é ✓", "plain é ✓"},
		{"evil\x1b[2J", `evil\x1b[2J`},
		{"a\nforged  row", "a forged  row"},
		{"bell\a del\x7f c1\u0085", `bell\a del\x7f c1\u0085`},
		{"\u202eowner", `\u202eowner`},
		{"line\u2028sep", `line\u2028sep`},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		if err := printRows(&buf, FormatTable, nil, []string{"v"}, [][]string{{tt.cell}}); err != nil {
			t.Fatal(err)
		}
		if got := buf.String(); got != "V\n"+tt.want+"\n" {
			t.Errorf("table cell %q printed %q, want %q", tt.cell, got, tt.want)
		}
		buf.Reset()
		if err := printKV(&buf, [2]string{"Owner", tt.cell}); err != nil {
			t.Fatal(err)
		}
		if got := buf.String(); got != "Owner: "+tt.want+"\n" {
			t.Errorf("record value %q printed %q, want %q", tt.cell, got, tt.want)
		}
	}
}
