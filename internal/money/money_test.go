package money

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestParseString(t *testing.T) {
	tests := []struct {
		in    string
		nanos int64
		out   string // canonical String of the parsed amount
	}{
		{"0", 0, "0.00"},
		{"-0", 0, "0.00"},
		{"+0.0", 0, "0.00"},
		{"12", 12_000_000_000, "12.00"},
		{"+12", 12_000_000_000, "12.00"},
		{"100.00", 100_000_000_000, "100.00"},
		{"0.075", 75_000_000, "0.075"},
		{".5", 500_000_000, "0.50"},
		{"1.", 1_000_000_000, "1.00"},
		{"-3.5", -3_500_000_000, "-3.50"},
		{"-0.000000001", -1, "-0.000000001"},
		{"0.000000001", 1, "0.000000001"},
		{"0.123456789", 123_456_789, "0.123456789"},
		{"1.100000000", 1_100_000_000, "1.10"},
		{"0000012.50", 12_500_000_000, "12.50"},
		{"9223372036.854775807", math.MaxInt64, "9223372036.854775807"},
		{"-9223372036.854775807", -math.MaxInt64, "-9223372036.854775807"},
		{"-9223372036.854775808", math.MinInt64, "-9223372036.854775808"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			a, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if a.Nanos() != tt.nanos {
				t.Fatalf("Parse(%q) = %d nanos, want %d", tt.in, a.Nanos(), tt.nanos)
			}
			if got := a.String(); got != tt.out {
				t.Fatalf("Parse(%q).String() = %q, want %q", tt.in, got, tt.out)
			}
			back, err := Parse(a.String())
			if err != nil || back != a {
				t.Fatalf("Parse(%q) = %v, %v; want %v", a.String(), back, err, a)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in   string
		want string // the whole error message
	}{
		{"", `invalid amount "": empty`},
		{"-", `invalid amount "-": no digits`},
		{"+", `invalid amount "+": no digits`},
		{".", `invalid amount ".": no digits`},
		{"-.", `invalid amount "-.": no digits`},
		{"abc", `invalid amount "abc": unexpected character 'a'`},
		{"1.2.3", `invalid amount "1.2.3": unexpected character '.'`},
		{"1,5", `invalid amount "1,5": unexpected character ','`},
		{"1e-3", `invalid amount "1e-3": unexpected character 'e'`},
		{" 1", `invalid amount " 1": unexpected character ' '`},
		{"1 ", `invalid amount "1 ": unexpected character ' '`},
		{"--1", `invalid amount "--1": unexpected character '-'`},
		{"0x10", `invalid amount "0x10": unexpected character 'x'`},
		{"NaN", `invalid amount "NaN": unexpected character 'N'`},
		{"1.5x", `invalid amount "1.5x": unexpected character 'x'`},
		{"0.0000000001", `invalid amount "0.0000000001": more than 9 decimal places`},
		{"1.1234567890", `invalid amount "1.1234567890": more than 9 decimal places`},
		{"9223372036.854775808", `invalid amount "9223372036.854775808": amount out of range`},
		{"-9223372036.854775809", `invalid amount "-9223372036.854775809": amount out of range`},
		{"9223372037", `invalid amount "9223372037": amount out of range`},
		{"99999999999999999999", `invalid amount "99999999999999999999": amount out of range`},
		{"184467440737095516160", `invalid amount "184467440737095516160": amount out of range`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			a, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want error %q", tt.in, a, tt.want)
			}
			if err.Error() != tt.want {
				t.Fatalf("Parse(%q) error = %q, want %q", tt.in, err, tt.want)
			}
			if strings.Contains(tt.want, "out of range") && !errors.Is(err, ErrOverflow) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrOverflow", tt.in, err)
			}
		})
	}
}

func TestMustParsePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("MustParse(\"x\") did not panic")
		}
	}()
	MustParse("x")
}

func TestArithmeticOverflow(t *testing.T) {
	const minA = Amount(math.MinInt64)
	tests := []struct {
		name    string
		op      func() (Amount, error)
		want    Amount
		wantErr bool
	}{
		{"add", func() (Amount, error) { return MustParse("1.5").Add(MustParse("2.25")) }, MustParse("3.75"), false},
		{"add negative", func() (Amount, error) { return MustParse("1").Add(MustParse("-2.5")) }, MustParse("-1.5"), false},
		{"add to max", func() (Amount, error) { return (Max - 1).Add(1) }, Max, false},
		{"add past max", func() (Amount, error) { return Max.Add(1) }, 0, true},
		{"add past min", func() (Amount, error) { return minA.Add(-1) }, 0, true},
		{"add max+max", func() (Amount, error) { return Max.Add(Max) }, 0, true},
		{"sub", func() (Amount, error) { return MustParse("10").Sub(MustParse("0.01")) }, MustParse("9.99"), false},
		{"sub past min", func() (Amount, error) { return minA.Sub(1) }, 0, true},
		{"sub min from zero", func() (Amount, error) { return Amount(0).Sub(minA) }, 0, true},
		{"sub min from -1", func() (Amount, error) { return Amount(-1).Sub(minA) }, Max, false},
		{"sub negative past max", func() (Amount, error) { return Max.Sub(-1) }, 0, true},
		{"mulint", func() (Amount, error) { return MustParse("0.075").MulInt(1000) }, MustParse("75"), false},
		{"mulint negative", func() (Amount, error) { return MustParse("0.5").MulInt(-3) }, MustParse("-1.5"), false},
		{"mulint zero", func() (Amount, error) { return Max.MulInt(0) }, 0, false},
		{"mulint to min", func() (Amount, error) { return Amount(math.MinInt64 / 2).MulInt(2) }, minA, false},
		{"mulint overflow", func() (Amount, error) { return Max.MulInt(2) }, 0, true},
		{"mulint overflow negative", func() (Amount, error) { return Max.MulInt(-2) }, 0, true},
		{"mulint overflow min", func() (Amount, error) { return minA.MulInt(-1) }, 0, true},
		{"mulint 128-bit overflow", func() (Amount, error) { return Max.MulInt(math.MaxInt64) }, 0, true},
		{"exact overflow", func() (Amount, error) { return exact(3, int64(Max)).Quo(2, RoundHalfUp) }, 0, true},
		{"exact 128-bit overflow", func() (Amount, error) { return exact(math.MaxInt64, int64(Max)).Quo(1, RoundUp) }, 0, true},
		// 31 × 1190112520884487201 = 2^65−1: the quotient by 2 is 2^64−1
		// with a remainder of one half, which must not wrap to zero when
		// rounded up.
		{"exact half up past 2^64", func() (Amount, error) { return exact(31, 1190112520884487201).Quo(2, RoundHalfUp) }, 0, true},
		{"exact up past 2^64", func() (Amount, error) { return exact(31, 1190112520884487201).Quo(2, RoundUp) }, 0, true},
		{"exact half up to max", func() (Amount, error) { return exact(2, int64(Max)).Quo(2, RoundHalfUp) }, Max, false},
		{"exact up past max", func() (Amount, error) { return exact(int64(Max), 2).Quo(2, RoundUp) }, Max, false},
		{"exact zero den", func() (Amount, error) { return exact(1, 1).Quo(0, RoundHalfUp) }, 0, true},
		{"exact negative den", func() (Amount, error) { return exact(1, 1).Quo(-1, RoundUp) }, 0, true},
		{"sum", func() (Amount, error) { return Sum(MustParse("0.1"), MustParse("0.2"), MustParse("-0.05")) }, MustParse("0.25"), false},
		{"sum empty", func() (Amount, error) { return Sum() }, 0, false},
		{"sum overflow", func() (Amount, error) { return Sum(Max, 1, -1) }, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.op()
			if tt.wantErr {
				if err == nil {
					t.Fatalf("= %v, want an error", got)
				}
				if !strings.Contains(tt.name, "den") && !errors.Is(err, ErrOverflow) {
					t.Fatalf("error %v does not wrap ErrOverflow", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("= %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestMillionMicrosSumToOne(t *testing.T) {
	micro := MustParse("0.000001")
	var total Amount
	for i := 0; i < 1_000_000; i++ {
		var err error
		if total, err = total.Add(micro); err != nil {
			t.Fatalf("Add at %d: %v", i, err)
		}
	}
	one := Amount(Scale)
	if total != one {
		t.Fatalf("1,000,000 × 0.000001 = %v, want exactly %v", total, one)
	}
	if total.String() != "1.00" {
		t.Fatalf("String() = %q, want %q", total.String(), "1.00")
	}
}

// exact is the exact product of factors, for tests.
func exact(factors ...int64) Exact {
	var x Exact
	if err := x.AddProduct(factors...); err != nil {
		panic(err)
	}
	return x
}

func TestExactRounding(t *testing.T) {
	tests := []struct {
		name       string
		a          string
		num, den   int64
		halfUp, up string
	}{
		{"exact", "2.50", 1_000_000, 1_000_000, "2.50", "2.50"},
		{"per million tokens", "2.50", 1_234_567, 1_000_000, "3.0864175", "3.0864175"},
		{"below half", "0.000000001", 4, 10, "0.00", "0.000000001"},
		{"exact half", "0.000000001", 5, 10, "0.000000001", "0.000000001"},
		{"above half", "0.000000001", 6, 10, "0.000000001", "0.000000001"},
		{"1.5 nanos", "0.000000003", 1, 2, "0.000000002", "0.000000002"},
		{"2.5 nanos", "0.000000005", 1, 2, "0.000000003", "0.000000003"},
		{"one third", "1", 1, 3, "0.333333333", "0.333333334"},
		{"two thirds", "1", 2, 3, "0.666666667", "0.666666667"},
		{"1/1e6 of a nano-unit", "0.000000001", 1, 1_000_000, "0.00", "0.000000001"},
		{"half of a nano-unit from large values", "0.000000001", 500_000, 1_000_000, "0.000000001", "0.000000001"},
		{"cheap tokens", "0.075", 1, 1_000_000, "0.000000075", "0.000000075"},
		{"zero", "0", 123, 7, "0.00", "0.00"},
		{"zero numerator", "5", 0, 7, "0.00", "0.00"},
		{"large exact", "9223372036.854775807", 1_000_000, 1_000_000, "9223372036.854775807", "9223372036.854775807"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := exact(int64(MustParse(tt.a)), tt.num)
			for _, c := range []struct {
				r    Rounding
				want string
			}{{RoundHalfUp, tt.halfUp}, {RoundUp, tt.up}} {
				got, err := x.Quo(tt.den, c.r)
				if err != nil {
					t.Fatal(err)
				}
				if got.String() != c.want {
					t.Errorf("%s × %d / %d rounded %v = %v, want %s", tt.a, tt.num, tt.den, c.r, got, c.want)
				}
			}
		})
	}
}

// TestExactSumsBeforeRounding: two half nano-units summed are one, not two.
func TestExactSumsBeforeRounding(t *testing.T) {
	var x Exact
	for range 2 {
		if err := x.AddProduct(1, 500_000); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := x.Quo(1_000_000, RoundHalfUp); err != nil || got != 1 {
		t.Fatalf("0.5 + 0.5 nano-units = %v, %v; want 0.000000001", got, err)
	}
	if err := x.AddProduct(1, -1); err == nil {
		t.Fatal("a negative factor was accepted")
	}
	big := exact(math.MaxInt64, math.MaxInt64)
	if err := big.AddProduct(math.MaxInt64, math.MaxInt64, 4); !errors.Is(err, ErrOverflow) {
		t.Fatalf("128-bit overflow: err = %v, want ErrOverflow", err)
	}
}

func TestJSON(t *testing.T) {
	type doc struct {
		Price Amount  `json:"price"`
		Opt   *Amount `json:"opt,omitempty"`
	}
	in := doc{Price: MustParse("-12.5"), Opt: nil}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"price":"-12.50"}`
	if string(b) != want {
		t.Fatalf("Marshal = %s, want %s", b, want)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Fatalf("Unmarshal = %+v, want %+v", out, in)
	}
	for _, bad := range []struct{ in, want string }{
		{`{"price":"1.0000000001"}`, `invalid amount "1.0000000001": more than 9 decimal places`},
		{`{"price":"ten"}`, `invalid amount "ten": unexpected character 't'`},
		// A JSON number would pass through float64 on some decoders; only
		// the decimal string form is accepted.
		{`{"price":0.5}`, `json: cannot unmarshal number into Go struct field doc.price of type money.Amount`},
	} {
		var d doc
		err := json.Unmarshal([]byte(bad.in), &d)
		if err == nil || err.Error() != bad.want {
			t.Errorf("Unmarshal(%s) error = %v, want %q", bad.in, err, bad.want)
		}
	}
}

func TestCurrency(t *testing.T) {
	for _, c := range []string{"USD", "EUR", "JPY", "XAU"} {
		if err := ValidateCurrency(c); err != nil {
			t.Errorf("ValidateCurrency(%q) = %v", c, err)
		}
	}
	for _, c := range []string{"", "usd", "US", "USDT", "U$D", "ÜSD"} {
		err := ValidateCurrency(c)
		want := `invalid currency "` + c + `": want a three-letter code such as USD`
		if err == nil || err.Error() != want {
			t.Errorf("ValidateCurrency(%q) = %v, want %q", c, err, want)
		}
	}
}

func TestAccessors(t *testing.T) {
	a := MustParse("-0.25")
	if !a.IsNegative() || a.Nanos() != -250_000_000 {
		t.Fatalf("IsNegative/Nanos of %v wrong", a)
	}
	if Amount(0).IsNegative() {
		t.Fatal("zero is negative")
	}
}

// FuzzParseRoundTrip checks that whatever Parse accepts prints canonically
// and parses back to the same amount, and that every int64 prints to a
// string Parse reads back exactly. Without -fuzz it runs only the seeds.
func FuzzParseRoundTrip(f *testing.F) {
	for _, s := range []string{"0", "-0.5", "12.50", "0.000000001", "9223372036.854775807",
		"-9223372036.854775808", "1.", ".5", "+3", "1e3", "", "-", "00.10", "1.1234567890"} {
		f.Add(s, int64(len(s))*1_000_003)
	}
	f.Add("", int64(math.MinInt64))
	f.Add("", int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, s string, n int64) {
		if a, err := Parse(s); err == nil {
			str := a.String()
			b, err := Parse(str)
			if err != nil || b != a {
				t.Fatalf("Parse(%q) = %d; Parse(%q) = %d, %v", s, a, str, b, err)
			}
			if b.String() != str {
				t.Fatalf("String not canonical: %q then %q", str, b.String())
			}
		} else if !strings.Contains(err.Error(), "invalid amount") {
			t.Fatalf("Parse(%q) error %q does not say invalid amount", s, err)
		}
		a := Amount(n)
		b, err := Parse(a.String())
		if err != nil || b != a {
			t.Fatalf("Parse(Amount(%d).String() = %q) = %d, %v", n, a.String(), b, err)
		}
	})
}

func TestParseCurrency(t *testing.T) {
	for in, want := range map[string]string{"USD": "USD", "usd": "USD", " eur ": "EUR", "Jpy": "JPY"} {
		if got, err := ParseCurrency(in); err != nil || got != want {
			t.Errorf("ParseCurrency(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "us", "usdt", "u$d", "üsd"} {
		if got, err := ParseCurrency(in); err == nil {
			t.Errorf("ParseCurrency(%q) = %q, want an error", in, got)
		}
	}
}
