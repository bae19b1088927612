package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/ledger/sqlstore"
	"github.com/caracal-dev/caracal/policy"
)

// SimConfig sizes a lease simulation.
type SimConfig struct {
	Seed      uint64
	Processes int // processes alive at any time
	Steps     int
}

// SimConfigFromEnv is def with CARACAL_SIM_SEED, CARACAL_SIM_STEPS and
// CARACAL_SIM_PROCESSES applied, so `make stress` runs the same test at a
// large size and a failing seed can be run again.
func SimConfigFromEnv(def SimConfig) SimConfig {
	if v, err := strconv.ParseUint(os.Getenv("CARACAL_SIM_SEED"), 10, 64); err == nil {
		def.Seed = v
	}
	if v, err := strconv.Atoi(os.Getenv("CARACAL_SIM_STEPS")); err == nil && v > 0 {
		def.Steps = v
	}
	if v, err := strconv.Atoi(os.Getenv("CARACAL_SIM_PROCESSES")); err == nil && v > 0 {
		def.Processes = v
	}
	return def
}

// Simulate runs a seeded random simulation of several processes sharing
// one database through leases, and checks after every step that no
// budget can be overspent and that the ledger accounts for every admitted
// call. open opens one more process on the shared database; it must be
// opened with ManualLeases, so that the simulation decides when each
// process syncs, and the simulation closes it.
//
// Each step is one of: a reservation by a random process for a random
// agent (an agent of a delegation chain or a lone agent), a settlement
// (at most the reserved amount, by any process, as a settlement through
// another replica would be) or release of an open call, the expiry of an
// open reservation, a process's lease sync, a reclaim, a policy edit
// (limit raised or lowered, a policy deactivated or reactivated, an agent
// suspended or resumed), a crash (a process abandoned with its leases and
// open reservations as they are, and a new one started) and the lapse of a
// crashed process's heartbeat.
//
// The checks, for every policy: (1) usage spent + reserved + leased, but
// for overruns (a charge above its reservation, which one settlement in
// twenty is), never grows past the limit (and, after a limit is lowered below it, only
// shrinks until it is under the new limit again); (2) every charge in the
// ledger is either in usage spent or still inside its holder's lease, and
// every open reservation either in usage reserved or inside a lease; (3)
// what each lease covers (its open reservations' amounts and the
// yet folded) fits its grant, and usage leased is the sum of the grants;
// (4) every call Reserve admitted has its reservation in the database.
func Simulate(t *testing.T, open func(t *testing.T) *sqlstore.Store, cfg SimConfig) {
	t.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	t.Logf("simulation: seed %d, %d processes, %d steps (CARACAL_SIM_SEED=%d reruns it)", cfg.Seed, cfg.Processes, cfg.Steps, cfg.Seed)

	procs := make([]*sqlstore.Store, cfg.Processes)
	for i := range procs {
		procs[i] = open(t)
	}
	defer func() {
		for _, p := range procs {
			p.Close()
		}
	}()
	admin := procs[0]
	mk := func(name, parent string) policy.Agent {
		a, err := admin.CreateAgent(ctx, ledger.NewAgent{Name: name, Owner: "sim", ParentID: parent})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	root, child, lone := mk("root", ""), mk("child", ""), mk("lone", "")
	limits := map[string]money.Amount{}
	var pols []policy.Policy
	add := func(p policy.Policy, err error) {
		if err != nil {
			t.Fatal(err)
		}
		pols = append(pols, p)
		limits[p.ID] = p.Limit
	}
	add(admin.CreatePolicy(ctx, ledger.NewPolicy{AgentID: root.ID, Limit: money.MustParse("60"), Window: policy.WindowTotal}))
	add(admin.CreateDelegation(ctx, ledger.NewDelegation{Parent: root.ID, Child: child.ID,
		Policy: ledger.NewPolicy{Limit: money.MustParse("45"), Window: policy.WindowTotal}}))
	add(admin.CreatePolicy(ctx, ledger.NewPolicy{AgentID: lone.ID, Limit: money.MustParse("30"), Window: policy.WindowDaily}))
	agents := []policy.Agent{root, child, lone}

	sim := &simState{t: t, ctx: ctx, admin: admin, pols: pols, bound: map[string]int64{}}
	for _, p := range pols {
		sim.bound[p.ID] = int64(p.Limit)
	}
	var crashed []string // holders of abandoned processes
	n := 0
	for step := 0; step < cfg.Steps; step++ {
		pi := rng.IntN(len(procs))
		p := procs[pi]
		what := ""
		switch k := rng.IntN(100); {
		case k < 40:
			a := agents[rng.IntN(len(agents))]
			amt := money.Amount(rng.Int64N(int64(money.MustParse("4"))))
			n++
			id := fmt.Sprintf("sim-%d", n)
			what = fmt.Sprintf("reserve %s %s by %d", id, amt, pi)
			d, err := p.Reserve(ctx, ledger.ReserveRequest{RequestID: id, AgentID: a.ID, Resource: "sim", Amount: amt, TTL: time.Hour})
			if err == nil && d.Allow {
				sim.open = append(sim.open, id)
				sim.mustBeDurable(id)
			}
		case k < 58:
			if id, ok := sim.anyOpen(rng); ok {
				r, err := admin.GetReservation(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				amt := money.Amount(rng.Int64N(int64(r.Amount) + 1))
				if rng.IntN(20) == 0 {
					amt = r.Amount + money.Amount(rng.Int64N(int64(money.MustParse("2")))) // an overrun
				}
				what = fmt.Sprintf("settle %s %s by %d", id, amt, pi)
				if _, err := p.Settle(ctx, ledger.SettleRequest{RequestID: id, Amount: amt}); err != nil {
					t.Fatalf("step %d: %s: %v", step, what, err)
				}
				sim.done(id)
			}
		case k < 63:
			if id, ok := sim.anyOpen(rng); ok {
				what = fmt.Sprintf("release %s by %d", id, pi)
				if _, err := p.Release(ctx, id, "sim"); err != nil {
					t.Fatalf("step %d: %s: %v", step, what, err)
				}
				sim.done(id)
			}
		case k < 66:
			if id, ok := sim.anyOpen(rng); ok {
				what = fmt.Sprintf("expire %s by %d", id, pi)
				sim.exec(`UPDATE reservations SET expires_ns = 0 WHERE request_id = ?`, id)
				if _, err := p.ExpireReservations(ctx, time.Now()); err != nil {
					t.Fatalf("step %d: %s: %v", step, what, err)
				}
				sim.done(id)
			}
		case k < 82:
			what = fmt.Sprintf("sync %d", pi)
			if err := p.SyncLeases(ctx); err != nil {
				t.Fatalf("step %d: %s: %v", step, what, err)
			}
		case k < 86:
			what = fmt.Sprintf("reclaim by %d", pi)
			if _, err := p.ReclaimLeases(ctx, time.Now()); err != nil {
				t.Fatalf("step %d: %s: %v", step, what, err)
			}
		case k < 92:
			what = sim.edit(rng, p, agents)
		case k < 96:
			what = fmt.Sprintf("crash %d", pi)
			if h := p.LeaseHolder(); h != "" {
				crashed = append(crashed, h)
			}
			if err := p.Abandon(); err != nil {
				t.Fatal(err)
			}
			procs[pi] = open(t)
			if pi == 0 {
				admin = procs[0]
				sim.admin = admin
			}
		default:
			if len(crashed) > 0 {
				i := rng.IntN(len(crashed))
				what = "heartbeat of " + crashed[i] + " lapses"
				sim.exec(`UPDATE lease_holders SET expires_ns = 0 WHERE id = ?`, crashed[i])
				crashed = append(crashed[:i], crashed[i+1:]...)
			}
		}
		sim.history = append(sim.history, fmt.Sprintf("%d: %s", step, what))
		if len(sim.history) > 30 {
			sim.history = sim.history[1:]
		}
		sim.check(step, what)
	}
}

// simState is what the simulation knows besides the database.
type simState struct {
	t     *testing.T
	ctx   context.Context
	admin *sqlstore.Store
	pols  []policy.Policy
	// bound is each policy's ceiling on spent + reserved + leased: its
	// limit, or what was already committed when the limit was lowered
	// below it, shrinking back to the limit as the committed total does.
	bound map[string]int64
	// open are the calls admitted and not finished by the simulation, in
	// admission order (a slice, not a map, so a seed replays exactly).
	open []string
	// history is the last steps, shown when a check fails.
	history []string
}

func (s *simState) exec(query string, args ...any) {
	s.t.Helper()
	if _, err := s.admin.DB().ExecContext(s.ctx, rebind(s.admin, query), args...); err != nil {
		s.t.Fatalf("%s: %v", query, err)
	}
}

func (s *simState) int64s(query string, args ...any) []int64 {
	s.t.Helper()
	rows, err := s.admin.ReadDB().QueryContext(s.ctx, rebind(s.admin, query), args...)
	if err != nil {
		s.t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			s.t.Fatalf("%s: %v", query, err)
		}
		out = append(out, v)
	}
	return out
}

func (s *simState) one(query string, args ...any) int64 {
	s.t.Helper()
	v := s.int64s(query, args...)
	if len(v) != 1 {
		s.t.Fatalf("%s: %d rows, want 1", query, len(v))
	}
	return v[0]
}

func (s *simState) anyOpen(rng *rand.Rand) (string, bool) {
	if len(s.open) == 0 {
		return "", false
	}
	// A reservation the expiry sweep finished meanwhile may be picked:
	// finishing it again must be a no-op.
	return s.open[rng.IntN(len(s.open))], true
}

func (s *simState) done(id string) {
	for i, o := range s.open {
		if o == id {
			s.open = append(s.open[:i], s.open[i+1:]...)
			return
		}
	}
}

// mustBeDurable checks that an admitted call's reservation is in the
// database.
func (s *simState) mustBeDurable(id string) {
	s.t.Helper()
	if n := s.one(`SELECT COUNT(*) FROM reservations WHERE request_id = ?`, id); n != 1 {
		s.t.Fatalf("admitted call %s has no durable reservation", id)
	}
}

// edit changes a random policy or agent through process p.
func (s *simState) edit(rng *rand.Rand, p *sqlstore.Store, agents []policy.Agent) string {
	s.t.Helper()
	var active []policy.Policy
	for _, q := range s.pols {
		if cur, err := p.GetPolicy(s.ctx, q.ID); err == nil && cur.Active {
			active = append(active, cur)
		}
	}
	if len(active) == 0 {
		return "no active policy to edit"
	}
	cur := active[rng.IntN(len(active))]
	pol := cur
	switch rng.IntN(4) {
	case 0, 1:
		limit := money.Amount(rng.Int64N(int64(money.MustParse("70"))))
		if _, err := p.UpdatePolicy(s.ctx, pol.ID, ledger.NewPolicy{Limit: limit, Window: cur.Window, WindowType: cur.WindowType, Timezone: cur.Timezone}); err != nil {
			s.t.Fatalf("update policy: %v", err)
		}
		total := s.total(pol.ID) - s.overruns(pol.ID)
		s.bound[pol.ID] = max(int64(limit), min(s.bound[pol.ID], total))
		return fmt.Sprintf("limit of %s to %s", pol.ID, limit)
	case 2:
		a := agents[rng.IntN(len(agents))]
		st := policy.StatusSuspended
		if rng.IntN(2) == 0 {
			st = policy.StatusActive
		}
		if _, err := p.SetAgentStatus(s.ctx, a.ID, st); err != nil {
			s.t.Fatalf("agent status: %v", err)
		}
		return fmt.Sprintf("agent %s %s", a.Name, st)
	default:
		// An inactive policy stays inactive; the agent gets a new one.
		if _, err := p.DeactivatePolicy(s.ctx, pol.ID); err != nil {
			s.t.Fatalf("deactivate: %v", err)
		}
		limit := money.Amount(rng.Int64N(int64(money.MustParse("70"))))
		np, err := p.CreatePolicy(s.ctx, ledger.NewPolicy{AgentID: cur.AgentID, Limit: limit, Window: cur.Window, WindowType: cur.WindowType, Timezone: cur.Timezone})
		if err != nil {
			s.t.Fatalf("create policy: %v", err)
		}
		s.pols = append(s.pols, np)
		s.bound[np.ID] = int64(np.Limit)
		return fmt.Sprintf("deactivate %s, new policy %s of %s", pol.ID, np.ID, limit)
	}
}

// total is a policy's spent + reserved + leased over every bucket.
func (s *simState) total(policyID string) int64 {
	return s.one(`SELECT CAST(COALESCE(SUM(spent_nanos + reserved_nanos + leased_nanos), 0) AS BIGINT) FROM usage WHERE policy_id = ?`, policyID)
}

// overruns is what charges of a policy's reservations exceeded their
// reservations by.
func (s *simState) overruns(policyID string) int64 {
	return s.one(`SELECT CAST(COALESCE(SUM(r.charge_nanos - r.amount_nanos), 0) AS BIGINT) FROM reservations r
		JOIN reservation_buckets b ON b.request_id = r.request_id
		WHERE b.policy_id = ? AND r.status <> 'open' AND r.charge_nanos > r.amount_nanos`, policyID)
}

// check asserts the invariants after a step.
func (s *simState) check(step int, what string) {
	s.t.Helper()
	fail := func(format string, args ...any) {
		s.t.Helper()
		s.t.Fatalf("step %d (%s): %s\nlast steps:\n%s", step, what, fmt.Sprintf(format, args...), strings.Join(s.history, "\n"))
	}
	for _, p := range s.pols {
		limit := s.one(`SELECT limit_nanos FROM policies WHERE id = ?`, p.ID)
		// An overrun is a real cost no decision could refuse: it is not
		// held against the bound.
		total := s.total(p.ID) - s.overruns(p.ID)
		if total > s.bound[p.ID] {
			fail("policy %s: spent + reserved + leased %s exceeds %s (limit %s)", p.ID, money.Amount(total), money.Amount(s.bound[p.ID]), money.Amount(limit))
		}
		s.bound[p.ID] = max(limit, total)

		spent := s.one(`SELECT CAST(COALESCE(SUM(spent_nanos), 0) AS BIGINT) FROM usage WHERE policy_id = ?`, p.ID)
		reserved := s.one(`SELECT CAST(COALESCE(SUM(reserved_nanos), 0) AS BIGINT) FROM usage WHERE policy_id = ?`, p.ID)
		leased := s.one(`SELECT CAST(COALESCE(SUM(leased_nanos), 0) AS BIGINT) FROM usage WHERE policy_id = ?`, p.ID)
		charged := s.one(`SELECT CAST(COALESCE(SUM(e.amount_nanos), 0) AS BIGINT) FROM events e
			JOIN reservation_buckets b ON b.request_id = e.request_id
			WHERE b.policy_id = ? AND e.outcome IN ('charged', 'unconfirmed')`, p.ID)
		inLease := s.one(`SELECT CAST(COALESCE(SUM(CASE WHEN r.charge_nanos > r.amount_nanos THEN r.amount_nanos ELSE r.charge_nanos END), 0) AS BIGINT) FROM reservations r
			JOIN reservation_buckets b ON b.request_id = r.request_id
			WHERE b.policy_id = ? AND r.holder IS NOT NULL AND r.status <> 'open'`, p.ID)
		if charged != spent+inLease {
			fail("policy %s: the ledger charges %s but usage spends %s and leases hold %s", p.ID, money.Amount(charged), money.Amount(spent), money.Amount(inLease))
		}
		openOut := s.one(`SELECT CAST(COALESCE(SUM(r.amount_nanos), 0) AS BIGINT) FROM reservations r
			JOIN reservation_buckets b ON b.request_id = r.request_id
			WHERE b.policy_id = ? AND r.holder IS NULL AND r.status = 'open'`, p.ID)
		if openOut != reserved {
			fail("policy %s: open reservations outside leases hold %s but usage reserves %s", p.ID, money.Amount(openOut), money.Amount(reserved))
		}
		grants := s.one(`SELECT CAST(COALESCE(SUM(grant_nanos), 0) AS BIGINT) FROM leases WHERE policy_id = ?`, p.ID)
		if grants != leased {
			fail("policy %s: leases grant %s but usage leases %s", p.ID, money.Amount(grants), money.Amount(leased))
		}
	}
	// What each lease covers fits its grant.
	over := s.int64s(`SELECT l.grant_nanos - COALESCE((SELECT SUM(CASE WHEN r.status = 'open' OR r.charge_nanos > r.amount_nanos
			THEN r.amount_nanos ELSE r.charge_nanos END) FROM reservations r
			JOIN reservation_buckets b ON b.request_id = r.request_id
			WHERE r.holder = l.holder_id AND b.policy_id = l.policy_id AND b.bucket_ns = l.bucket_ns), 0)
		FROM leases l`)
	for _, v := range over {
		if v < 0 {
			fail("a lease covers %s more than it grants\n%s", money.Amount(-v), s.dumpLeases())
		}
	}
}

// rebind rewrites ? placeholders as $n where the store's dialect wants.
func rebind(s *sqlstore.Store, query string) string {
	if !s.Dialect().NumberedPlaceholders() {
		return query
	}
	out := make([]byte, 0, len(query)+8)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			out = append(out, '$')
			out = strconv.AppendInt(out, int64(n), 10)
			continue
		}
		out = append(out, query[i])
	}
	return string(out)
}

// dumpLeases describes every lease and what it covers.
func (s *simState) dumpLeases() string {
	rows, err := s.admin.ReadDB().QueryContext(s.ctx, `SELECT l.holder_id, l.policy_id, l.bucket_ns, l.grant_nanos,
		(SELECT COALESCE(SUM(CASE WHEN r.status = 'open' OR r.charge_nanos > r.amount_nanos
			THEN r.amount_nanos ELSE r.charge_nanos END), 0) FROM reservations r JOIN reservation_buckets b ON b.request_id = r.request_id
			WHERE r.holder = l.holder_id AND b.policy_id = l.policy_id AND b.bucket_ns = l.bucket_ns)
		FROM leases l ORDER BY l.holder_id, l.policy_id`)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var h, p string
		var bucket, grant, n int64
		if err := rows.Scan(&h, &p, &bucket, &grant, &n); err != nil {
			return err.Error()
		}
		fmt.Fprintf(&b, "lease %s %s %d grant %s covering %s\n", h, p, bucket, money.Amount(grant), money.Amount(n))
	}
	return b.String()
}
