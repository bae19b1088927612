package cli

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/caracal-dev/caracal/policy"
)

// Output formats of read commands.
const (
	FormatTable = "table"
	FormatJSON  = "json"
	FormatCSV   = "csv"
)

// outputValue is the --output flag: it refuses an unknown format at parse
// time, so the error is a usage error naming the flag.
type outputValue struct {
	p       *string
	allowed []string
}

func (o *outputValue) String() string { return *o.p }
func (o *outputValue) Type() string   { return "format" }
func (o *outputValue) Set(s string) error {
	for _, a := range o.allowed {
		if s == a {
			*o.p = s
			return nil
		}
	}
	return fmt.Errorf("unknown format %q: want %s", s, orList(o.allowed))
}

// orList joins choices for a message: "a", "a or b", "a, b or c".
func orList(choices []string) string {
	if len(choices) <= 1 {
		return strings.Join(choices, "")
	}
	return strings.Join(choices[:len(choices)-1], ", ") + " or " + choices[len(choices)-1]
}

// addOutputFlag adds `-o, --output table|json` (and csv when allowCSV) to
// cmd, storing the choice in p, which defaults to table.
func addOutputFlag(cmd *cobra.Command, p *string, allowCSV bool) {
	allowed := []string{FormatTable, FormatJSON}
	if allowCSV {
		allowed = append(allowed, FormatCSV)
	}
	*p = FormatTable
	cmd.Flags().VarP(&outputValue{p: p, allowed: allowed}, "output", "o", "output format: "+strings.Join(allowed, ", "))
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(allowed, cobra.ShellCompDirectiveNoFileComp))
}

// printJSON writes v as indented JSON followed by a newline. Field names
// come from struct tags and are part of the documented interface.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// printJSONLine writes v as one line of JSON (JSON Lines).
func printJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// table writes aligned columns under an upper-case header.
type table struct {
	tw *tabwriter.Writer
}

// newTable starts a table on w with the given column headers.
func newTable(w io.Writer, headers ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	if len(headers) > 0 {
		up := make([]string, len(headers))
		for i, h := range headers {
			up[i] = strings.ToUpper(h)
		}
		t.row(up...)
	}
	return t
}

// row adds one row; tabs and newlines inside cells are replaced by spaces
// so a value can never break the alignment, and every other control
// character is escaped (policy.EscapeText), so text stored before input was
// checked cannot drive the terminal.
func (t *table) row(cells ...string) {
	clean := make([]string, len(cells))
	for i, c := range cells {
		clean[i] = cleanCell(c)
	}
	fmt.Fprintln(t.tw, strings.Join(clean, "\t"))
}

var cellReplacer = strings.NewReplacer("\t", " ", "\n", " ", "\r", " ")

// cleanCell makes one value safe to print in a table or after a label.
func cleanCell(s string) string { return policy.EscapeText(cellReplacer.Replace(s)) }

// flush writes the table out.
func (t *table) flush() error { return t.tw.Flush() }

// printKV prints "key: value" lines aligned, for a single record.
func printKV(w io.Writer, pairs ...[2]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	for _, p := range pairs {
		fmt.Fprintf(tw, "%s:\t%s\n", p[0], cleanCell(p[1]))
	}
	return tw.Flush()
}

// printRows renders one result set in format: jsonValue for json, headers
// and rows for table and csv. An empty table prints the header only, so
// scripts parsing it see a stable shape.
func printRows(w io.Writer, format string, jsonValue any, headers []string, rows [][]string) error {
	switch format {
	case FormatJSON:
		return printJSON(w, jsonValue)
	case FormatCSV:
		cw := csv.NewWriter(w)
		if err := cw.Write(headers); err != nil {
			return err
		}
		if err := cw.WriteAll(rows); err != nil {
			return err
		}
		return cw.Error()
	default:
		t := newTable(w, headers...)
		for _, r := range rows {
			t.row(r...)
		}
		return t.flush()
	}
}

// formatTime prints a time for tables: UTC, second precision, RFC 3339.
// JSON output keeps full precision through time.Time's own encoding.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// formatTimePtr is formatTime for optional times.
func formatTimePtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return formatTime(*t)
}

// orDash prints "-" for an empty cell.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
