package admin

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
)

// quotaFields are a quota's fields, as the configuration spells them.
var quotaFields = []string{"limit", "per", "unit"}

// readQuotas reads a quotas array at key ("quotas", "hosts[0].quotas"):
// each entry an object {limit, per, unit} with per a duration string
// ("1m"). Problems go to p.problems with their index; an entry that
// cannot be read keeps its place, so that the validation's indexes stay
// right.
func (p *limitsPatch) readQuotas(key string, v json.RawMessage) []config.Quota {
	if jsonKind(v) != "array" {
		p.problems = append(p.problems, wrongType(key, v, "an array"))
		return nil
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(v, &entries); err != nil {
		p.problems = append(p.problems, fmt.Errorf("%s: %v", key, jsonError(err)))
		return nil
	}
	qs := make([]config.Quota, len(entries))
	for i, e := range entries {
		k := fmt.Sprintf("%s[%d]", key, i)
		if jsonKind(e) != "object" {
			p.problems = append(p.problems, wrongType(k, e, "an object"))
			qs[i] = config.Quota{Limit: 1, Per: time.Second} // reported already
			continue
		}
		ms, err := members(e)
		if err != nil {
			p.problems = append(p.problems, fmt.Errorf("%s: %v", k, jsonError(err)))
			continue
		}
		q := &qs[i]
		eachKnown(k+".", ms, quotaFields, &p.problems, func(m member) {
			name := k + "." + m.name
			var err error
			switch m.name {
			case "limit":
				var n *int
				if err = readInt(name, m.value, &n); err == nil && n != nil {
					q.Limit = *n
				}
			case "per":
				var s *string
				if err = readString(name, m.value, &s); err == nil && s != nil {
					d, perr := time.ParseDuration(*s)
					if perr != nil {
						err = fmt.Errorf("%s: not a duration: %s (want e.g. \"1m\", \"1h\", \"24h\")", name, quote(*s))
						d = time.Second // reported already: not again as "0s is not a window"
					}
					q.Per = d
				}
			case "unit":
				var s *string
				if err = readString(name, m.value, &s); err == nil && s != nil {
					q.Unit = *s
				}
			}
			if err != nil {
				p.problems = append(p.problems, err)
			}
		})
	}
	return qs
}

// quotaUseDoc is a quota with its use, in GET /api/v1/stats.
type quotaUseDoc struct {
	Limit int    `json:"limit"`
	Per   string `json:"per"`
	Unit  string `json:"unit"`
	Used  int    `json:"used"` // units counted in the window ending now
}

func quotaUseDocs(qs []dispatch.QuotaStats) []quotaUseDoc {
	out := make([]quotaUseDoc, 0, len(qs))
	for _, q := range qs {
		out = append(out, quotaUseDoc{Limit: q.Quota.Limit, Per: config.FormatPer(q.Quota.Per), Unit: q.Quota.Unit, Used: q.Used})
	}
	return out
}
