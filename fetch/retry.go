package fetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashfs/hashfs/internal/hfserr"
)

const (
	maxBackoff    = 4 * time.Second
	maxRetryAfter = 10 * time.Second
)

// transientError marks a failure that another attempt may cure: 5xx, 429,
// resets, short bodies, an expired redirect URL.
type transientError struct {
	err        error
	retryAfter time.Duration // server's Retry-After, already capped; 0 if none
}

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

func transient(err error) error { return &transientError{err: err} }

// meter is the retry policy, the logger and the running totals that a
// Client and a URLSource share. Its zero value is not ready: call init.
type meter struct {
	retries   int
	retryBase time.Duration
	log       *slog.Logger

	requests  atomic.Int64
	blobBytes atomic.Int64
	retried   atomic.Int64
	failures  atomic.Int64
	skipped   atomic.Int64

	health *health // of the one endpoint a Client speaks to (maybe shared, see Endpoints); nil for a URLSource
}

// init applies o's retry and logging settings and their defaults.
func (m *meter) init(o Options) {
	m.retries, m.retryBase, m.log = o.Retries, o.RetryBase, o.Logger
	switch {
	case m.retries == 0:
		m.retries = defaultRetries
	case m.retries < 0:
		m.retries = 0
	}
	if m.retryBase <= 0 {
		m.retryBase = defaultRetryBase
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
}

// snapshot returns the running totals.
func (m *meter) snapshot() Stats {
	return Stats{Requests: m.requests.Load(), BlobBytes: m.blobBytes.Load(), Retries: m.retried.Load(),
		Failures: m.failures.Load(), Skipped: m.skipped.Load()}
}

// retry runs attempt until it succeeds, fails permanently, the context ends or
// the retry budget is spent. Every attempt re-issues the original request, so
// a stale redirect is re-asked from its origin. Exhaustion wraps
// hfserr.ErrUnavailable and the last cause.
func (m *meter) retry(ctx context.Context, what string, attempt func(context.Context) error) error {
	return m.retryAt(ctx, nil, what, attempt)
}

// retryAt is retry at one endpoint whose health h (nil: not tracked)
// decides whether to try at all (see health): an endpoint that could not
// be reached a moment ago fails the operation at once with
// ErrEndpointDown, and an attempt that cannot reach it ends the retries
// of every operation but the one that found it down.
func (m *meter) retryAt(ctx context.Context, h *health, what string, attempt func(context.Context) error) error {
	r := roleNormal
	if h != nil {
		var err error
		if r, err = h.enter(); err != nil {
			m.skipped.Add(1)
			return fmt.Errorf("%s: %w", what, err)
		}
		defer func() { h.leave(r) }()
	}
	for tries := 1; ; tries++ {
		err := attempt(ctx)
		if h != nil && ctx.Err() == nil {
			if isUnreachable(err) {
				var again bool
				if r, again = h.unreachable(r); !again {
					m.failures.Add(1)
					return fmt.Errorf("%s: %w: %w", what, hfserr.ErrUnavailable, err)
				}
			} else if !errors.Is(err, context.Canceled) {
				h.reached()
				r = roleNormal // the probe, if held, was given back
			}
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
		var te *transientError
		if !errors.As(err, &te) {
			return fmt.Errorf("%s: %w", what, err)
		}
		if tries > m.retries {
			m.failures.Add(1)
			return fmt.Errorf("%s: gave up after %d attempts: %w: %w", what, tries, hfserr.ErrUnavailable, te.err)
		}
		if h != nil {
			if err := h.stillUp(r); err != nil {
				m.skipped.Add(1)
				return fmt.Errorf("%s: %w (last error: %v)", what, err, te.err)
			}
		}
		m.retried.Add(1)
		wait := m.backoff(tries-1, te.retryAfter)
		m.log.Debug("registry retry", "op", what, "attempt", tries, "wait", wait, "err", te.err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), te.err)
		case <-t.C:
		}
	}
}

// retry runs attempt under the meter's policy with a client on the
// authenticated transport, built (or rebuilt) for each attempt as needed.
func (c *Client) retry(ctx context.Context, what string, attempt func(context.Context, *http.Client) error) error {
	return c.meter.retryAt(ctx, c.health, what, func(ctx context.Context) error {
		hc, err := c.httpClient(ctx)
		if err != nil {
			return err
		}
		return attempt(ctx, hc)
	})
}

// backoff returns the wait before retry number i (0-based): RetryBase doubled
// i times, capped, with equal jitter; a server's Retry-After wins.
func (m *meter) backoff(i int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return retryAfter
	}
	d := m.retryBase
	for ; i > 0 && d < maxBackoff; i-- {
		d *= 2
	}
	d = min(d, maxBackoff)
	half := d / 2
	return half + rand.N(half+1)
}

// parseRetryAfter reads a Retry-After value, delta-seconds or an HTTP date,
// and caps it at maxRetryAfter. Anything unparseable or in the past is 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	// A range error still yields the clamped value, which the caps handle.
	if s, err := strconv.ParseInt(v, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		if s <= 0 {
			return 0
		}
		if s >= int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(s) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	d := t.Sub(now)
	if d <= 0 {
		return 0
	}
	return min(d, maxRetryAfter)
}

// classifyStatus turns an unwanted HTTP status into an error. fromRegistry is
// false when the response came from a redirect target (blob storage, CDN):
// a 401/403 there is an expired signed URL, so it is retried by re-asking the
// registry rather than reported as a denial.
func classifyStatus(code int, fromRegistry bool, retryAfter time.Duration, cause error) error {
	switch {
	case code == http.StatusNotFound:
		return fmt.Errorf("%w: %w", cause, hfserr.ErrNotFound)
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		if !fromRegistry {
			return transient(cause)
		}
		return fmt.Errorf("%w: %w", cause, hfserr.ErrDenied)
	case code == http.StatusRequestedRangeNotSatisfiable:
		return fmt.Errorf("%w: %w", cause, hfserr.ErrInvalid)
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests,
		code >= 500 && code != http.StatusNotImplemented && code != http.StatusHTTPVersionNotSupported:
		return &transientError{err: cause, retryAfter: retryAfter}
	case code >= 400 && code < 500:
		return fmt.Errorf("%w: %w", cause, hfserr.ErrInvalid)
	default:
		return fmt.Errorf("%w: %w", cause, hfserr.ErrUnavailable)
	}
}

// classifyTransportErr sorts a failed round trip: certificate problems are
// permanent, everything else (refused, reset, timeout, EOF) is transient.
// Context errors are returned as they are.
func classifyTransportErr(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		verify           *tls.CertificateVerificationError
	)
	if errors.As(err, &unknownAuthority) || errors.As(err, &hostname) ||
		errors.As(err, &invalid) || errors.As(err, &verify) {
		return fmt.Errorf("%w: %w", err, hfserr.ErrUnavailable)
	}
	return transient(err)
}
