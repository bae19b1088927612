package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"

	"github.com/caracal-dev/caracal/internal/errkind"
	"github.com/caracal-dev/caracal/internal/money"
	"github.com/caracal-dev/caracal/ledger"
	"github.com/caracal-dev/caracal/policy"
)

// priceCols are the columns scanPrice reads, in order.
const priceCols = `resource, currency, per_call_nanos, input_per_million_nanos, output_per_million_nanos,
	cached_per_million_nanos, cache_write_per_million_nanos, reasoning_per_million_nanos,
	per_unit_path, per_unit_nanos, charge_errors, charge_rounds, updated_ns`

func scanPrice(r rowScanner) (policy.PriceRule, error) {
	var (
		p                                            policy.PriceRule
		perCall, in, out, cached, cacheWrite, reason int64
		unitPath                                     sql.NullString
		unitPrice, updated                           int64
		chargeErrors, chargeRounds                   sql.NullBool
	)
	if err := r.Scan(&p.Resource, &p.Currency, &perCall, &in, &out, &cached, &cacheWrite, &reason,
		&unitPath, &unitPrice, &chargeErrors, &chargeRounds, &updated); err != nil {
		return policy.PriceRule{}, err
	}
	p.PerCall = money.Amount(perCall)
	p.InputPerMillion = money.Amount(in)
	p.OutputPerMillion = money.Amount(out)
	p.CachedInputPerMillion = money.Amount(cached)
	p.CacheWritePerMillion = money.Amount(cacheWrite)
	p.ReasoningPerMillion = money.Amount(reason)
	if unitPath.Valid {
		p.PerUnit = &policy.PerUnit{Path: unitPath.String, Price: money.Amount(unitPrice)}
	}
	if chargeErrors.Valid {
		b := chargeErrors.Bool
		p.ChargeErrors = &b
	}
	p.ChargeRounds = chargeRounds.Valid && chargeRounds.Bool
	p.UpdatedAt = fromNS(updated)
	return p, nil
}

// normalizePrice fills a rule's defaults and checks it with
// policy.ValidatePriceRule, whose error names the rule and the field.
func normalizePrice(r policy.PriceRule) (policy.PriceRule, error) {
	r = policy.NormalizePriceRule(r)
	if err := policy.ValidatePriceRule(r); err != nil {
		return r, invalid(err)
	}
	if r.PerUnit != nil {
		u := *r.PerUnit
		r.PerUnit = &u
	}
	if r.ChargeErrors != nil {
		b := *r.ChargeErrors
		r.ChargeErrors = &b
	}
	return r, nil
}

func (s *Store) upsertPrice(ctx context.Context, q querier, r policy.PriceRule) error {
	var (
		unitPath     sql.NullString
		unitPrice    int64
		chargeErrors sql.NullBool
	)
	if r.PerUnit != nil {
		unitPath = sql.NullString{String: r.PerUnit.Path, Valid: true}
		unitPrice = r.PerUnit.Price.Nanos()
	}
	if r.ChargeErrors != nil {
		chargeErrors = sql.NullBool{Bool: *r.ChargeErrors, Valid: true}
	}
	_, err := q.ExecContext(ctx, s.q(`INSERT INTO prices (`+priceCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (resource) DO UPDATE SET
			currency = excluded.currency,
			per_call_nanos = excluded.per_call_nanos,
			input_per_million_nanos = excluded.input_per_million_nanos,
			output_per_million_nanos = excluded.output_per_million_nanos,
			cached_per_million_nanos = excluded.cached_per_million_nanos,
			cache_write_per_million_nanos = excluded.cache_write_per_million_nanos,
			reasoning_per_million_nanos = excluded.reasoning_per_million_nanos,
			per_unit_path = excluded.per_unit_path,
			per_unit_nanos = excluded.per_unit_nanos,
			charge_errors = excluded.charge_errors,
			charge_rounds = excluded.charge_rounds,
			updated_ns = excluded.updated_ns`),
		r.Resource, r.Currency, r.PerCall.Nanos(), r.InputPerMillion.Nanos(), r.OutputPerMillion.Nanos(),
		r.CachedInputPerMillion.Nanos(), r.CacheWritePerMillion.Nanos(), r.ReasoningPerMillion.Nanos(),
		unitPath, unitPrice, chargeErrors, r.ChargeRounds, toNS(r.UpdatedAt))
	if err != nil {
		return fmt.Errorf("write price rule %q: %w", r.Resource, err)
	}
	return nil
}

// SetPrice implements ledger.Pricebook. An empty currency means USD.
func (s *Store) SetPrice(ctx context.Context, r policy.PriceRule) (policy.PriceRule, error) {
	r, err := normalizePrice(r)
	if err != nil {
		return policy.PriceRule{}, err
	}
	r.UpdatedAt = fromNS(toNS(now()))
	if err := s.upsertPrice(ctx, s.db, r); err != nil {
		return policy.PriceRule{}, s.wrap(err)
	}
	return r, nil
}

// GetPrice implements ledger.Pricebook: the rule stored under exactly this
// resource pattern (policy.MatchRule picks the rule for a resource).
func (s *Store) GetPrice(ctx context.Context, resource string) (policy.PriceRule, error) {
	p, err := scanPrice(s.rdb.QueryRowContext(ctx, s.q(`SELECT `+priceCols+` FROM prices WHERE resource = ?`), resource))
	if errors.Is(err, sql.ErrNoRows) {
		return policy.PriceRule{}, errorf(ledger.ErrNotFound, "no price rule for %q", resource)
	}
	if err != nil {
		return policy.PriceRule{}, s.wrap(fmt.Errorf("read price rule %q: %w", resource, err))
	}
	return p, nil
}

// DeletePrice implements ledger.Pricebook.
func (s *Store) DeletePrice(ctx context.Context, resource string) error {
	res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM prices WHERE resource = ?`), resource)
	if err != nil {
		return s.wrap(fmt.Errorf("delete price rule %q: %w", resource, err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return s.wrap(fmt.Errorf("delete price rule %q: %w", resource, err))
	}
	if n == 0 {
		return errorf(ledger.ErrNotFound, "no price rule for %q", resource)
	}
	return nil
}

// ListPrices implements ledger.Pricebook, ordered by resource pattern byte
// by byte, the same on both backends whatever the database's collation.
func (s *Store) ListPrices(ctx context.Context) ([]policy.PriceRule, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+priceCols+` FROM prices`)
	if err != nil {
		return nil, s.wrap(fmt.Errorf("list price rules: %w", err))
	}
	defer rows.Close()
	out := []policy.PriceRule{}
	for rows.Next() {
		p, err := scanPrice(rows)
		if err != nil {
			return nil, s.wrap(fmt.Errorf("list price rules: %w", err))
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(fmt.Errorf("list price rules: %w", err))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Resource < out[j].Resource })
	return out, nil
}

// ImportPrices implements ledger.Pricebook. Every rule is checked before
// anything is written; an error names the entry (counting from 1), the
// rule and the field. A resource given twice is refused rather than
// letting the later entry silently win.
func (s *Store) ImportPrices(ctx context.Context, rules []policy.PriceRule) error {
	norm := make([]policy.PriceRule, len(rules))
	seen := make(map[string]int, len(rules))
	at := fromNS(toNS(now()))
	for i, r := range rules {
		r, err := normalizePrice(r)
		if err != nil {
			return errkind.New(ledger.ErrInvalid, fmt.Sprintf("entry %d: %v", i+1, err), err)
		}
		if j, dup := seen[r.Resource]; dup {
			return errorf(ledger.ErrInvalid, "entry %d: price rule %q: resource: duplicate of entry %d", i+1, r.Resource, j+1)
		}
		seen[r.Resource] = i
		r.UpdatedAt = at
		norm[i] = r
	}
	if len(norm) == 0 {
		return nil
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, r := range norm {
			if err := s.upsertPrice(ctx, tx, r); err != nil {
				return err
			}
		}
		return nil
	})
}
