package llmproxy

import (
	"testing"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/policy"
)

func TestExplainWorstCase(t *testing.T) {
	r := policy.PriceRule{Resource: "llm:openai/gpt-5", InputPerMillion: money.MustParse("1.25"), OutputPerMillion: money.MustParse("10")}
	tests := []struct {
		name    string
		ep      endpoint
		in, out int64
		capped  bool
		basis   string
		hint    string
	}{
		{"chat without a cap", epChat, 1100, 128_000, false,
			"max_completion_tokens unset: 128,000 output tokens at 10.00 USD per million, plus up to 1,100 input tokens at 1.25 USD per million",
			"set max_completion_tokens to reserve less"},
		{"messages with a cap", epMessages, 2048, 64_000, true,
			"64,000 output tokens at 10.00 USD per million, plus up to 2,048 input tokens at 1.25 USD per million",
			"lower max_tokens to reserve less"},
		{"responses without a cap", epResponses, 1_000_000, 128_000, false,
			"max_output_tokens unset: 128,000 output tokens at 10.00 USD per million, plus up to 1,000,000 input tokens at 1.25 USD per million",
			"set max_output_tokens to reserve less"},
		{"embeddings", epEmbeddings, 8192, 0, false,
			"up to 8,192 input tokens at 1.25 USD per million",
			"send less input to reserve less"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := explainWorstCase(r, tt.ep, tt.in, tt.out, tt.capped)
			if w.Basis != tt.basis || w.Hint != tt.hint {
				t.Fatalf("got %q / %q\nwant %q / %q", w.Basis, w.Hint, tt.basis, tt.hint)
			}
		})
	}
}

func TestGroupDigits(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 128000: "128,000", 1047576: "1,047,576", -1234: "-1,234"} {
		if got := groupDigits(n); got != want {
			t.Errorf("groupDigits(%d) = %q, want %q", n, got, want)
		}
	}
}
