package mcp

import (
	"errors"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/caracal-dev/caracal/internal/jsoncheck"
)

// rejectJSON turns a jsoncheck.Check error into the JSON-RPC error the host gets:
// -32700 for depth (the message cannot be read safely at all), -32600 for a
// repeated key. The request's id is echoed when it is unambiguous, so the
// host can match the error to its request.
func rejectJSON(raw []byte, err error) (id string, code int, msg string) {
	var e *jsoncheck.Error
	if !errors.As(err, &e) || e.DuplicateKey == "" {
		return "", codeParseError, "Parse error: " + err.Error()
	}
	// {"id":1,"ID":2} leaves the id as ambiguous as {"id":1,"id":2}.
	if !strings.EqualFold(e.DuplicateKey, "id") {
		if v := gjson.GetBytes(raw, "id"); v.Type == gjson.Number || v.Type == gjson.String {
			id = v.Raw
		}
	}
	return id, codeInvalidRequest, "Invalid Request: " + err.Error() + "; a repeated key is read differently by different JSON decoders, so the proxy refuses it"
}
