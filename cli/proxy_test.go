package cli

import (
	"reflect"
	"testing"
)

func TestDefaultProviders(t *testing.T) {
	openai := Provider{Name: "openai", BaseURL: "https://api.openai.com", APIKeyEnv: "OPENAI_API_KEY"}
	anthropic := Provider{Name: "anthropic", BaseURL: "https://api.anthropic.com", APIKeyEnv: "ANTHROPIC_API_KEY"}
	tests := []struct {
		name string
		env  map[string]string
		want []Provider
	}{
		{"no keys", nil, nil},
		{"openai only", map[string]string{"OPENAI_API_KEY": "sk-x"}, []Provider{openai}},
		{"anthropic only", map[string]string{"ANTHROPIC_API_KEY": "sk-ant"}, []Provider{anthropic}},
		{"both", map[string]string{"OPENAI_API_KEY": "a", "ANTHROPIC_API_KEY": "b"}, []Provider{openai, anthropic}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := defaultProviders(func(k string) string { return tc.env[k] })
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("defaultProviders = %+v, want %+v", got, tc.want)
			}
		})
	}
}
