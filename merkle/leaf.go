// Package merkle is Caracal's tamper-evident log: the canonical leaf
// encoding of ledger events, RFC 6962 hashing over golang.org/x/mod/sumdb/tlog,
// C2SP checkpoints signed as C2SP signed notes with Ed25519, inclusion and
// consistency proofs, and full verification of a stored ledger.
//
// The package imports nothing of the project: the ledger converts its rows
// to Leaf values and feeds Verify through small interfaces, so a third party
// can reuse this package (or docs/ledger-format.md) to check a ledger export.
package merkle

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"golang.org/x/mod/sumdb/tlog"
)

// LeafVersion is the first byte of every leaf this package encodes.
const LeafVersion byte = 1

// Leaf is every field of one ledger event, in plain types, as hashed into
// the tree. Times are Unix nanoseconds (UTC); amounts are int64 nano-units
// of Currency. The leaf index (the event's sequence number) is not part of
// the leaf: it is the leaf's position in the tree.
type Leaf struct {
	ID               string
	TimeNS           int64
	AgentID          string
	AgentName        string
	Chain            []string // agent IDs, the agent first
	Resource         string
	Operation        string
	Quantity         string
	Unit             string
	AmountNanos      int64
	Currency         string
	RequestID        string
	Outcome          string
	Code             string
	Reason           string
	InputTokens      int64
	OutputTokens     int64
	CachedTokens     int64
	CacheWriteTokens int64
	ReasoningTokens  int64
	Upstream         string
	Unpriced         bool
}

// AppendLeaf appends the canonical encoding of l (version 1) to dst and
// returns the extended slice. The layout, documented byte by byte in
// docs/ledger-format.md, is the version byte followed by every field in
// declaration order: strings as a 4-byte big-endian length and the UTF-8
// bytes, integers as 8-byte big-endian two's complement, Chain as a 4-byte
// count followed by each string, Unpriced as one byte 0 or 1.
func AppendLeaf(dst []byte, l *Leaf) []byte {
	dst = append(dst, LeafVersion)
	dst = appendString(dst, l.ID)
	dst = binary.BigEndian.AppendUint64(dst, uint64(l.TimeNS))
	dst = appendString(dst, l.AgentID)
	dst = appendString(dst, l.AgentName)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(l.Chain)))
	for _, c := range l.Chain {
		dst = appendString(dst, c)
	}
	dst = appendString(dst, l.Resource)
	dst = appendString(dst, l.Operation)
	dst = appendString(dst, l.Quantity)
	dst = appendString(dst, l.Unit)
	dst = binary.BigEndian.AppendUint64(dst, uint64(l.AmountNanos))
	dst = appendString(dst, l.Currency)
	dst = appendString(dst, l.RequestID)
	dst = appendString(dst, l.Outcome)
	dst = appendString(dst, l.Code)
	dst = appendString(dst, l.Reason)
	for _, n := range [...]int64{l.InputTokens, l.OutputTokens, l.CachedTokens, l.CacheWriteTokens, l.ReasoningTokens} {
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	dst = appendString(dst, l.Upstream)
	if l.Unpriced {
		dst = append(dst, 1)
	} else {
		dst = append(dst, 0)
	}
	return dst
}

// Encode returns the canonical encoding of l.
func (l *Leaf) Encode() []byte { return AppendLeaf(make([]byte, 0, 256), l) }

// Hash returns the RFC 6962 leaf hash SHA-256(0x00 ‖ Encode()).
func (l *Leaf) Hash() tlog.Hash { return tlog.RecordHash(l.Encode()) }

func appendString(dst []byte, s string) []byte {
	// A ledger field cannot reach 4 GiB (both databases cap a TEXT value
	// far below it); saturating keeps the function total without a panic.
	n := min(len(s), math.MaxUint32)
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	return append(dst, s[:n]...)
}

// ErrBadLeaf reports leaf bytes that are not a canonical encoding.
var ErrBadLeaf = errors.New("malformed leaf")

// DecodeLeaf parses the canonical encoding produced by AppendLeaf. It
// refuses unknown versions, truncated input and trailing bytes, so a
// decoded leaf re-encodes to exactly b.
func DecodeLeaf(b []byte) (Leaf, error) {
	d := decoder{b: b}
	var l Leaf
	if v := d.byte(); d.err == nil && v != LeafVersion {
		return Leaf{}, fmt.Errorf("%w: version %d, want %d", ErrBadLeaf, v, LeafVersion)
	}
	l.ID = d.string()
	l.TimeNS = d.int64()
	l.AgentID = d.string()
	l.AgentName = d.string()
	if n := d.uint32(); d.err == nil {
		if int64(n) > int64(len(d.b)/4) {
			d.fail("chain count %d exceeds the remaining bytes", n)
		} else {
			l.Chain = make([]string, n)
			for i := range l.Chain {
				l.Chain[i] = d.string()
			}
		}
	}
	l.Resource = d.string()
	l.Operation = d.string()
	l.Quantity = d.string()
	l.Unit = d.string()
	l.AmountNanos = d.int64()
	l.Currency = d.string()
	l.RequestID = d.string()
	l.Outcome = d.string()
	l.Code = d.string()
	l.Reason = d.string()
	l.InputTokens = d.int64()
	l.OutputTokens = d.int64()
	l.CachedTokens = d.int64()
	l.CacheWriteTokens = d.int64()
	l.ReasoningTokens = d.int64()
	l.Upstream = d.string()
	switch u := d.byte(); {
	case d.err != nil:
	case u == 1:
		l.Unpriced = true
	case u != 0:
		d.fail("unpriced byte %d is neither 0 nor 1", u)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return Leaf{}, d.err
	}
	return l, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, a ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrBadLeaf, fmt.Sprintf(format, a...))
	}
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.fail("truncated")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) uint32() uint32 {
	if v := d.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) int64() int64 {
	if v := d.take(8); v != nil {
		return int64(binary.BigEndian.Uint64(v))
	}
	return 0
}

func (d *decoder) string() string {
	n := d.uint32()
	if d.err != nil {
		return ""
	}
	if uint64(n) > uint64(len(d.b)) {
		d.fail("string length %d exceeds the remaining %d bytes", n, len(d.b))
		return ""
	}
	return string(d.take(int(n)))
}
