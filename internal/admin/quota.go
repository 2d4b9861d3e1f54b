package admin

import (
	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
)

// quotaUseDoc is a quota with its use, in GET /api/v1/stats.
type quotaUseDoc struct {
	Limit int    `json:"limit"`
	Per   string `json:"per"`
	Unit  string `json:"unit"`
	Used  int    `json:"used"` // units counted in the window ending now
	// Debt is what Used is above Limit (0 within it): a tokens quota
	// charged more than its answers were priced at (docs/shaping.md,
	// "LLM APIs: pricing requests"); its requests wait until the window
	// has room again.
	Debt int `json:"debt"`
}

func quotaUseDocs(qs []dispatch.QuotaStats) []quotaUseDoc {
	out := make([]quotaUseDoc, 0, len(qs))
	for _, q := range qs {
		out = append(out, quotaUseDoc{Limit: q.Quota.Limit, Per: config.FormatPer(q.Quota.Per), Unit: q.Quota.Unit, Used: q.Used, Debt: max(q.Used-q.Quota.Limit, 0)})
	}
	return out
}
