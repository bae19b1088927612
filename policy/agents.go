package policy

import "fmt"

// Descendants returns id and the IDs of every agent below it among agents,
// breadth first.
func Descendants(agents []Agent, id string) []string {
	children := map[string][]string{}
	for _, a := range agents {
		if a.ParentID != "" {
			children[a.ParentID] = append(children[a.ParentID], a.ID)
		}
	}
	out := []string{id}
	seen := map[string]bool{id: true}
	for i := 0; i < len(out); i++ {
		for _, c := range children[out[i]] {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	return out
}

// ParseOutcome reads an event outcome as a filter names it; "" is no filter.
func ParseOutcome(s string) (Outcome, error) {
	switch o := Outcome(s); o {
	case "", OutcomeCharged, OutcomeDenied, OutcomeUnconfirmed, OutcomeRefunded:
		return o, nil
	}
	return "", fmt.Errorf("invalid outcome %q: want charged, denied, unconfirmed or refunded", s)
}
