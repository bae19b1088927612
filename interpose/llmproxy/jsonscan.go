package llmproxy

import "bytes"

// fieldScanner captures the raw value of one top-level key of a JSON object
// streamed through Write, holding at most max bytes of it. It lets the proxy
// read `usage` from a response of any size (an embeddings list can run to
// tens of megabytes) without buffering the response.
//
// It is a tokenizer, not a validator: on malformed input it finds nothing.
type fieldScanner struct {
	key   []byte
	max   int
	depth int
	state scanState
	inStr bool
	esc   bool
	// inKey is true while reading a top-level key string into keyBuf.
	inKey   bool
	keyBuf  []byte
	keyLong bool
	match   bool
	capture bool
	value   []byte
	found   bool
	over    bool
}

type scanState uint8

const (
	stKey     scanState = iota // expecting a key or the closing brace
	stColon                    // after a key, expecting ':'
	stValue                    // after ':', expecting a value
	stInValue                  // inside a top-level value
)

func newFieldScanner(key string, max int) *fieldScanner {
	return &fieldScanner{key: []byte(key), max: max}
}

// Write feeds the next bytes of the document.
func (s *fieldScanner) Write(p []byte) {
	if s.found || s.over {
		return
	}
	for _, c := range p {
		if s.capture {
			if len(s.value) >= s.max {
				s.over, s.capture = true, false
				return
			}
			s.value = append(s.value, c)
		}
		if s.inStr {
			switch {
			case s.esc:
				s.esc = false
			case c == '\\':
				s.esc = true
			case c == '"':
				s.inStr = false
				if s.inKey {
					s.inKey = false
					s.state = stColon
				}
				continue
			}
			if s.inKey {
				if len(s.keyBuf) < len(s.key)+1 {
					s.keyBuf = append(s.keyBuf, c)
				} else {
					s.keyLong = true
				}
			}
			continue
		}
		switch c {
		case '"':
			s.inStr = true
			if s.depth == 1 {
				switch s.state {
				case stKey:
					s.inKey, s.keyBuf, s.keyLong = true, s.keyBuf[:0], false
				case stValue:
					s.startValue(c)
				}
			}
		case '{', '[':
			if s.depth == 1 && s.state == stValue {
				s.startValue(c)
			}
			s.depth++
			if s.depth == 1 {
				if c != '{' {
					s.over = true // not an object: nothing to find
					return
				}
				s.state = stKey
			}
		case '}', ']':
			s.depth--
			if s.depth == 0 {
				s.endValue()
				s.over = !s.found
				return
			}
		case ':':
			if s.depth == 1 && s.state == stColon {
				s.state = stValue
				s.match = !s.keyLong && bytes.Equal(s.keyBuf, s.key)
			}
		case ',':
			if s.depth == 1 {
				s.endValue()
				if s.found {
					return
				}
				s.state = stKey
			}
		case ' ', '\t', '\n', '\r':
		default:
			if s.depth == 1 && s.state == stValue {
				s.startValue(c)
			}
		}
	}
}

func (s *fieldScanner) startValue(c byte) {
	s.state = stInValue
	if s.match {
		s.capture = true
		s.value = append(s.value[:0], c)
	}
}

// endValue is called on the ',' or '}' that ends a top-level value; that
// byte was appended while capturing and is dropped here.
func (s *fieldScanner) endValue() {
	if !s.capture {
		return
	}
	s.capture = false
	s.value = bytes.TrimSpace(s.value[:len(s.value)-1])
	s.found = true
}

// Value returns the captured raw JSON value, or nil if the key was not
// (yet) seen or its value exceeded the bound.
func (s *fieldScanner) Value() []byte {
	if !s.found {
		return nil
	}
	return s.value
}
