package fetch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/hashfs/hashfs/internal/hfserr"
)

// ErrEndpointDown marks an operation that was not tried because its
// endpoint could not be reached a moment ago (see health). Such errors
// also wrap hfserr.ErrUnavailable.
var ErrEndpointDown = errors.New("endpoint unreachable, not tried")

const (
	healthMinWait = time.Second      // first interval an unreachable endpoint is left alone
	healthMaxWait = 30 * time.Second // the interval doubles up to this
)

// health is one endpoint's memory of being unreachable, so that a source
// that is down costs one retry budget, not one per operation. After a
// connection-level failure (refused, DNS, dial or header timeout; never
// an HTTP answer such as 404 or 503) the endpoint is down: operations
// fail at once with ErrEndpointDown, except one probe at a time once the
// current interval has passed. The interval starts at healthMinWait and
// doubles with every failed probe up to healthMaxWait; any answer from
// the endpoint ends the outage. The operation that found the endpoint
// down keeps its own retries (a blip stays a blip), holding the probe
// meanwhile. The zero value is an endpoint that is up.
type health struct {
	now func() time.Time // nil: time.Now (tests)

	mu      sync.Mutex
	down    bool
	since   time.Time     // first failure of this outage
	until   time.Time     // no probe before this
	wait    time.Duration // the current interval
	probing bool          // an operation holds the probe
}

// Endpoints is the health of every endpoint the Clients of one mount
// speak to, by scheme and host: one registry's repositories share one.
// Safe for concurrent use.
type Endpoints struct {
	mu sync.Mutex
	m  map[string]*health
}

// NewEndpoints returns an empty Endpoints.
func NewEndpoints() *Endpoints { return &Endpoints{m: map[string]*health{}} }

// of returns the health of endpoint key; with e nil, a health of its own.
func (e *Endpoints) of(key string) *health {
	if e == nil {
		return &health{}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	h := e.m[key]
	if h == nil {
		h = &health{}
		e.m[key] = h
	}
	return h
}

// role is what an operation may do at an endpoint.
type role uint8

const (
	roleNormal     role = iota // the endpoint was up when it started
	roleDiscoverer             // found the endpoint down; keeps its retries, holds the probe
	roleProbe                  // the one attempt allowed while down; holds the probe
)

func (h *health) clock() time.Time {
	if h.now != nil {
		return h.now()
	}
	return time.Now()
}

// enter admits an operation: any while the endpoint is up, else the probe
// once the interval has passed and no other operation holds it. A refusal
// wraps ErrEndpointDown and hfserr.ErrUnavailable.
func (h *health) enter() (role, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.down {
		return roleNormal, nil
	}
	now := h.clock()
	if h.probing || now.Before(h.until) {
		return roleNormal, h.refusal(now)
	}
	h.probing = true
	return roleProbe, nil
}

// stillUp reports whether an operation of role r may try again: always
// but for a normal operation once the endpoint is down; then the refusal.
func (h *health) stillUp(r role) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r != roleNormal || !h.down {
		return nil
	}
	return h.refusal(h.clock())
}

// refusal is the error of an operation not tried; h.mu is held.
func (h *health) refusal(now time.Time) error {
	next := "after the probe under way"
	if !h.probing {
		next = "in " + h.until.Sub(now).Round(time.Millisecond).String()
	}
	return fmt.Errorf("unreachable since %s, next try %s: %w: %w",
		h.since.Format(time.TimeOnly), next, ErrEndpointDown, hfserr.ErrUnavailable)
}

// reached records an answer from the endpoint: the outage, if any, is over.
func (h *health) reached() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.down, h.probing, h.wait = false, false, 0
}

// unreachable records a connection-level failure of an operation of role
// r and returns its role from now on, and whether it may try again.
func (h *health) unreachable(r role) (role, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.clock()
	switch {
	case r == roleProbe:
		h.wait = min(2*h.wait, healthMaxWait)
		h.until = now.Add(h.wait)
		return r, false
	case r == roleDiscoverer:
		h.until = now.Add(h.wait)
		return r, true
	case !h.down:
		h.down, h.since, h.wait, h.probing = true, now, healthMinWait, true
		h.until = now.Add(h.wait)
		return roleDiscoverer, true
	default: // another operation found it down first
		return r, false
	}
}

// leave ends an operation of role r, giving back the probe it held.
func (h *health) leave(r role) {
	if r == roleNormal {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.probing = false
}

// isUnreachable reports whether err says that the endpoint could not be
// reached at all: no connection (refused, no route, DNS) or no answer in
// time. A cancelled context is not the endpoint's fault (the caller
// checks its own context's deadline first: a dial timeout also matches
// context.DeadlineExceeded).
func isUnreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var dns *net.DNSError
	var op *net.OpError
	var ne net.Error
	switch {
	case errors.As(err, &dns):
		return true
	case errors.As(err, &op) && op.Op == "dial":
		return true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return true
	case errors.As(err, &ne) && ne.Timeout():
		return true
	}
	return false
}
