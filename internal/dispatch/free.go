package dispatch

// AcquireFree grants r at once when it needs no token (Request.NoToken)
// and a slot of its kind is free, without entering the queue: an
// intercepted CONNECT needs only a tunnel slot (docs/tls-interception.md),
// so a full queue must neither refuse it nor have it evict a waiting
// request. It reports false, holding nothing, when r needs a token, no
// slot is free, free requests of its kind are waiting (they go first), or
// the dispatcher is draining; the caller then queues r as usual (Enqueue).
// The permit counts as admitted, with no wait.
func (d *Dispatcher) AcquireFree(r Request) (*Permit, bool) {
	if !r.NoToken || r.Kind >= numKinds {
		return nil, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mu.draining || d.mu.readyFree[r.Kind].top() != nil || !d.slotFreeLocked(r.Kind) {
		return nil, false
	}
	now := d.clock.Now()
	w := &Ticket{d: d, kind: r.Kind, state: granted}
	w.item.Urgency, w.item.Arrival, w.item.Enqueued, w.item.Client = r.Urgency, now, now, r.Client
	d.mu.slots[r.Kind].Acquire()
	w.permit = Permit{w: w, d: d}
	d.mu.admitted++
	return &w.permit, true
}
