package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/caracal-dev/caracal/ledger"
)

func (s *Server) merkleStatus(w http.ResponseWriter, r *http.Request, _ principal) error {
	st, err := ledger.StatusOfMerkle(r.Context(), s.opts.Store, s.now())
	if err != nil {
		return storeError("merkle status", err)
	}
	return writeJSON(w, http.StatusOK, st)
}

func (s *Server) listCheckpoints(w http.ResponseWriter, r *http.Request, _ principal) error {
	cps := []ledger.CheckpointView{}
	if err := s.opts.Store.Checkpoints(r.Context(), func(cp ledger.Checkpoint) error {
		cps = append(cps, ledger.ViewCheckpoint(cp))
		return nil
	}); err != nil {
		return storeError("list checkpoints", err)
	}
	return writeJSON(w, http.StatusOK, cps)
}

func (s *Server) latestCheckpoint(w http.ResponseWriter, r *http.Request, _ principal) error {
	cp, err := s.opts.Store.LatestCheckpoint(r.Context())
	if errors.Is(err, ledger.ErrNotFound) {
		return notFound("no checkpoint yet: the ledger has not been integrated")
	}
	if err != nil {
		return storeError("latest checkpoint", err)
	}
	return writeJSON(w, http.StatusOK, ledger.ViewCheckpoint(cp))
}

// treeSize reads a non-negative tree size from v, named name; absent (or
// empty) is -1: the latest.
func treeSize(name, v string) (int64, error) {
	if v == "" {
		return -1, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, badRequest("%s: invalid tree size %q: want 0 or more", name, v)
	}
	return n, nil
}

// checkpointExists answers not found for a size without a checkpoint.
func (s *Server) checkpointExists(r *http.Request, name string, size int64) error {
	if size < 0 {
		return nil
	}
	_, err := s.opts.Store.CheckpointAt(r.Context(), size)
	if errors.Is(err, ledger.ErrNotFound) {
		return notFound("%s %d: no checkpoint of that size", name, size)
	}
	if err != nil {
		return storeError("read checkpoint", err)
	}
	return nil
}

func (s *Server) checkpointAt(w http.ResponseWriter, r *http.Request, _ principal) error {
	size, err := treeSize("size", r.PathValue("size"))
	if err != nil {
		return err
	}
	cp, err := s.opts.Store.CheckpointAt(r.Context(), size)
	if errors.Is(err, ledger.ErrNotFound) {
		return notFound("size %d: no checkpoint of that size", size)
	}
	if err != nil {
		return storeError("read checkpoint", err)
	}
	return writeJSON(w, http.StatusOK, ledger.ViewCheckpoint(cp))
}

// proveInclusion is `caracal merkle prove`: event=ID or seq=N, and
// optionally size=S; the answer is the proof JSON of
// docs/ledger-format.md, which `caracal merkle verify-proof` checks.
func (s *Server) proveInclusion(w http.ResponseWriter, r *http.Request, _ principal) error {
	ctx := r.Context()
	q := r.URL.Query()
	eventID, seqText := q.Get("event"), q.Get("seq")
	if (eventID == "") == (seqText == "") {
		return badRequest("give exactly one of event or seq")
	}
	size, err := treeSize("size", q.Get("size"))
	if err != nil {
		return err
	}
	var seq int64
	if eventID != "" {
		if seq, err = s.opts.Store.SeqOf(ctx, eventID); err != nil {
			if errors.Is(err, ledger.ErrNotFound) {
				return notFound("event: %v", err)
			}
			return storeError("find event", err)
		}
	} else if seq, err = strconv.ParseInt(seqText, 10, 64); err != nil || seq < 0 {
		return badRequest("seq: invalid sequence number %q: want 0 or more", seqText)
	}
	if err := s.checkpointExists(r, "size", size); err != nil {
		return err
	}
	p, err := ledger.ProveInclusion(ctx, s.opts.Store, seq, size)
	if err != nil {
		if errors.Is(err, ledger.ErrNotFound) {
			return notFound("seq %d: no event at that position in the tree of the checkpoint", seq)
		}
		return storeError("prove inclusion", err)
	}
	return writeJSON(w, http.StatusOK, p)
}

// proveConsistency is `caracal merkle consistency`: from=N, optionally
// to=M (default the latest checkpoint).
func (s *Server) proveConsistency(w http.ResponseWriter, r *http.Request, _ principal) error {
	q := r.URL.Query()
	if q.Get("from") == "" {
		return badRequest("from: required")
	}
	from, err := treeSize("from", q.Get("from"))
	if err != nil {
		return err
	}
	to, err := treeSize("to", q.Get("to"))
	if err != nil {
		return err
	}
	if to >= 0 && from > to {
		return badRequest("from %d: must not be more than to %d", from, to)
	}
	for _, c := range []struct {
		name string
		size int64
	}{{"from", from}, {"to", to}} {
		if err := s.checkpointExists(r, c.name, c.size); err != nil {
			return err
		}
	}
	p, err := ledger.ProveConsistency(r.Context(), s.opts.Store, from, to)
	if err != nil {
		if errors.Is(err, ledger.ErrInvalid) {
			return badRequest("from %d: %v", from, err)
		}
		return storeError("prove consistency", err)
	}
	return writeJSON(w, http.StatusOK, p)
}

// signingKeys lists the checkpoint signing keys with their public halves
// in note verifier-key format, which verifiers of checkpoints and proofs
// take (as `caracal keys export-public`).
func (s *Server) signingKeys(w http.ResponseWriter, r *http.Request, _ principal) error {
	keys, err := s.opts.Store.SigningKeys(r.Context())
	if err != nil {
		return storeError("list signing keys", err)
	}
	return writeJSON(w, http.StatusOK, nonNil(keys))
}
