package sqlstore

import (
	"sync"
	"time"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/policy"
)

// leaseKey names one lease of this process: a policy's usage bucket.
type leaseKey struct {
	policyID string
	bucket   int64
}

// lease is this process's share of one policy bucket's headroom, as the
// process sees it in memory. grant always equals the row's grant_nanos
// once the transaction that changed it has committed: every change to the
// row is applied here, under book.mu, right after its commit.
//
// Every reservation admitted under the lease is an entry until a fold
// takes it out: open ones count their reserved amount, ones finished in
// this process their charge (up to the reserved amount). avail = grant −
// open − charged is what the process may still admit without asking the
// database; a finish gives back at once what the charge did not use.
type lease struct {
	pol     policy.Policy
	grant   int64
	open    int64
	charged int64
	entries map[string]*entry
	// baseSpent and baseReserved are the policy's usage in the window
	// outside this lease (reserved includes other leases, whole), as read
	// by the last transaction that looked: the decision's view of the
	// budget is base plus this lease's entries.
	baseSpent, baseReserved int64
	// frozen stops admissions: set when a change to agents or policies is
	// seen, when another process wants the headroom back, and when the
	// bucket is no longer the current one. An acquire thaws it.
	frozen bool
	// tightUntil makes acquires grant exactly one call's worth: another
	// process asked for headroom back, so shares are kept small for a while.
	tightUntil time.Time
	// lastNeed is the last amount an acquire was asked for, the unit of
	// renewal ahead of need.
	lastNeed int64
	// lastGrant is the size of the last grant, to renew when a quarter of
	// it is left.
	lastGrant int64
}

// entry is one reservation admitted under a lease.
type entry struct {
	amount   int64
	charge   int64
	finished bool
}

func (l *lease) avail() int64 { return l.grant - l.open - l.charged }

// usage is the decision's view of the lease's policy.
// A frozen lease's unused rest is not this process's to spend, so it
// counts as reserved.
func (l *lease) usage(agentName string) policy.PolicyUsage {
	reserved := l.baseReserved + l.open
	if l.frozen {
		reserved = l.baseReserved + l.grant - l.charged
	}
	return policy.PolicyUsage{
		Policy:    l.pol,
		AgentName: agentName,
		Spent:     money.Amount(l.baseSpent + l.charged),
		Reserved:  money.Amount(reserved),
	}
}

// book is a process's leases and the reservations admitted under them.
// Its zero value is ready; the caller holds mu around every method.
type book struct {
	mu     sync.Mutex
	leases map[leaseKey]*lease
	// held maps each admitted reservation to the leases it holds.
	held map[string][]leaseKey
}

func (b *book) lease(k leaseKey) *lease {
	return b.leases[k]
}

// ensure returns the lease for k, creating an empty one.
func (b *book) ensure(k leaseKey, p policy.Policy) *lease {
	if b.leases == nil {
		b.leases = make(map[leaseKey]*lease)
		b.held = make(map[string][]leaseKey)
	}
	l := b.leases[k]
	if l == nil {
		l = &lease{pol: p, entries: make(map[string]*entry)}
		b.leases[k] = l
	}
	l.pol = p
	return l
}

// fits reports whether every lease in keys exists, is not frozen and has
// amount available.
func (b *book) fits(keys []leaseKey, amount int64) bool {
	for _, k := range keys {
		l := b.leases[k]
		if l == nil || l.frozen || l.avail() < amount {
			return false
		}
	}
	return true
}

// admit takes amount from every lease in keys for requestID. The caller
// has checked fits.
func (b *book) admit(requestID string, keys []leaseKey, amount int64) {
	for _, k := range keys {
		l := b.leases[k]
		l.entries[requestID] = &entry{amount: amount}
		l.open += amount
	}
	b.held[requestID] = keys
}

// unadmit gives back what admit took, when the reservation did not
// become durable.
func (b *book) unadmit(requestID string) {
	for _, k := range b.held[requestID] {
		l := b.leases[k]
		if l == nil {
			continue
		}
		if e := l.entries[requestID]; e != nil && !e.finished {
			l.open -= e.amount
			delete(l.entries, requestID)
		}
	}
	delete(b.held, requestID)
}

// finish records that this process finished requestID with charge: its
// entries count the charge instead of the reserved amount until a fold.
// A reservation the book does not hold (made elsewhere, or folded
// already) is ignored.
func (b *book) finish(requestID string, charge int64) {
	for _, k := range b.held[requestID] {
		l := b.leases[k]
		if l == nil {
			continue
		}
		e := l.entries[requestID]
		if e == nil || e.finished {
			continue
		}
		e.finished, e.charge = true, charge
		l.open -= e.amount
		l.charged += e.covered()
		// The database spent an overrun's excess at once.
		l.baseSpent += max(charge-e.amount, 0)
	}
}

// covered is what an entry takes of its lease: its reserved amount while
// open, then its charge, up to the reserved amount. A charge beyond the
// reservation (an overrun) was never the lease's to grant: the fold adds
// it to spent on top.
func (e *entry) covered() int64 {
	if !e.finished {
		return e.amount
	}
	return min(e.charge, e.amount)
}

// fold takes a finished reservation out of the lease k: the database
// moved its charge to spent, so the grant shrinks by what the charge took
// of the lease (foldCovered), and the entry leaves, whatever this process
// knew of it. Whatever of the reserved amount the charge did not use stays
// in the lease.
func (b *book) fold(k leaseKey, requestID string, amount, charge int64) {
	l := b.leases[k]
	if l == nil {
		return
	}
	l.grant -= foldCovered(amount, charge)
	l.baseSpent += foldCovered(amount, charge)
	if e := l.entries[requestID]; e != nil {
		if e.finished {
			l.charged -= e.covered()
		} else {
			l.open -= e.amount
		}
		delete(l.entries, requestID)
	}
	keys := b.held[requestID]
	for i, hk := range keys {
		if hk == k {
			keys = append(keys[:i:i], keys[i+1:]...)
			break
		}
	}
	if len(keys) == 0 {
		delete(b.held, requestID)
	} else {
		b.held[requestID] = keys
	}
}

// foldCovered is what a finished reservation of amount, charged charge,
// takes of its lease when folded; foldCoveredSQL is the same over a
// reservations row aliased r.
func foldCovered(amount, charge int64) int64 { return min(charge, amount) }

const foldCoveredSQL = `CASE WHEN r.charge_nanos > r.amount_nanos THEN r.amount_nanos ELSE r.charge_nanos END`

// reset forgets every lease, when the database no longer knows this
// process as a holder.
func (b *book) reset() {
	b.leases = nil
	b.held = nil
}
