package dispatch

// HostRule is the hosts[].match of the rule whose token (and, for HTTP,
// slot) the permit holds, in canonical form, or "" when no rule matched
// its destination. It takes the dispatcher's lock (a reload may replace
// the rule's limits): call it off the hot path (tracing, debugging).
func (p *Permit) HostRule() string {
	if p == nil || p.rule == nil {
		return ""
	}
	p.d.mu.Lock()
	defer p.d.mu.Unlock()
	return p.rule.limit.Match.String()
}
