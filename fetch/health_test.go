package fetch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/hashfs/hashfs/internal/fakeclock"
	"github.com/hashfs/hashfs/internal/hfserr"
)

func TestIsUnreachable(t *testing.T) {
	refused := &url.Error{Op: "Get", URL: "http://127.0.0.1:1/v2/", Err: &net.OpError{Op: "dial", Net: "tcp",
		Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", transient(refused), true},
		{"refused inside a handshake error", fmt.Errorf("authenticate to x: %w", refused), true},
		{"DNS", &url.Error{Op: "Get", Err: &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "nx.invalid", IsNotFound: true}}}, true},
		{"dial timeout", &net.OpError{Op: "dial", Err: os.ErrDeadlineExceeded}, true},
		{"no answer in time", &url.Error{Op: "Get", Err: timeoutErr{}}, true},
		{"connection reset while reading", transient(&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), false},
		{"404", fmt.Errorf("HTTP 404: %w", hfserr.ErrNotFound), false},
		{"401", fmt.Errorf("HTTP 401: %w", hfserr.ErrDenied), false},
		{"503", transient(errors.New("HTTP 503")), false},
		{"cancelled", fmt.Errorf("get: %w", context.Canceled), false},
		{"none", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := isUnreachable(tc.err); got != tc.want {
				t.Errorf("isUnreachable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "net/http: timeout awaiting response headers" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// TestHealthIntervals walks one outage: the discoverer keeps its retries,
// others are refused, one probe at a time after each interval, doubling
// up to the cap, and an answer ends it.
func TestHealthIntervals(t *testing.T) {
	clk := fakeclock.New(time.Unix(1_700_000_000, 0))
	h := &health{now: clk.Now}
	refused := func(t *testing.T) {
		t.Helper()
		if _, err := h.enter(); !errors.Is(err, ErrEndpointDown) || !errors.Is(err, hfserr.ErrUnavailable) {
			t.Fatalf("enter while down = %v, want ErrEndpointDown and ErrUnavailable", err)
		}
	}
	r, err := h.enter()
	if r != roleNormal || err != nil {
		t.Fatalf("enter while up = %v, %v", r, err)
	}
	other, _ := h.enter()
	if r, again := h.unreachable(r); r != roleDiscoverer || !again {
		t.Fatalf("first unreachable: %v, %v; want the discoverer, retrying", r, again)
	}
	if _, again := h.unreachable(other); again {
		t.Error("an operation that started while up retries after the endpoint went down")
	}
	if h.stillUp(other) == nil || h.stillUp(roleDiscoverer) != nil {
		t.Error("stillUp: only the discoverer may retry")
	}
	refused(t)
	clk.Advance(2 * time.Second)
	refused(t) // the discoverer still holds the probe
	h.unreachable(roleDiscoverer)
	h.leave(roleDiscoverer)
	refused(t)

	for _, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second} {
		clk.Advance(wait - time.Millisecond)
		refused(t)
		clk.Advance(time.Millisecond)
		p, err := h.enter()
		if p != roleProbe || err != nil {
			t.Fatalf("after %v: enter = %v, %v; want the probe", wait, p, err)
		}
		refused(t) // one probe at a time
		if _, again := h.unreachable(p); again {
			t.Fatal("a probe retries")
		}
		h.leave(p)
	}
	clk.Advance(30 * time.Second)
	p, _ := h.enter()
	h.reached()
	h.leave(p)
	if r, err := h.enter(); r != roleNormal || err != nil {
		t.Errorf("after an answer: enter = %v, %v; want up", r, err)
	}
}

// TestClientEndpointDown: a Client whose registry refuses connections
// spends its retry budget once; then operations fail at once without a
// request until a probe is due; the registry back on its address is
// found by the probe.
func TestClientEndpointDown(t *testing.T) {
	f := newFixture(t)
	addr := f.srv.Listener.Addr().String()
	c := f.client(t, func(o *Options) { o.RetryBase = 5 * time.Millisecond })
	clk := fakeclock.New(time.Now())
	c.health.now = clk.Now
	ctx := context.Background()
	if _, err := c.StatBlob(ctx, f.blobDigest); err != nil {
		t.Fatal(err)
	}
	f.srv.Close() // refuses from now on

	base := c.Stats().Requests
	_, err := c.StatBlob(ctx, f.blobDigest)
	if !errors.Is(err, hfserr.ErrUnavailable) || errors.Is(err, ErrEndpointDown) {
		t.Fatalf("first stat while refused: %v", err)
	}
	first := c.Stats().Requests - base
	if first != int64(defaultRetries+1) {
		t.Errorf("the first operation made %d attempts, want its whole budget of %d", first, defaultRetries+1)
	}
	for _, op := range []struct {
		name string
		run  func() error
	}{
		{"stat blob", func() error { _, err := c.StatBlob(ctx, f.blobDigest); return err }},
		{"stat manifest", func() error { _, err := c.StatManifest(ctx, f.manDigest.String()); return err }},
		{"tags", func() error { _, err := c.Tags(ctx); return err }},
		{"fetch range", func() error { _, err := c.FetchRange(ctx, f.blobDigest, 0, 10); return err }},
		{"referrers", func() error { _, err := c.Referrers(ctx, f.manDigest); return err }},
	} {
		if err := op.run(); !errors.Is(err, ErrEndpointDown) || !errors.Is(err, hfserr.ErrUnavailable) {
			t.Errorf("%s while down: %v, want ErrEndpointDown", op.name, err)
		}
	}
	if n := c.Stats().Requests - base - first; n != 0 {
		t.Errorf("%d requests while the endpoint was down", n)
	}
	if s := c.Stats().Skipped; s != 5 {
		t.Errorf("Skipped = %d, want 5", s)
	}

	clk.Advance(healthMinWait)
	before := c.Stats().Requests
	if _, err := c.StatBlob(ctx, f.blobDigest); errors.Is(err, ErrEndpointDown) || !errors.Is(err, hfserr.ErrUnavailable) {
		t.Errorf("probe: %v", err)
	}
	if n := c.Stats().Requests - before; n != 1 {
		t.Errorf("the probe made %d requests, want 1", n)
	}
	clk.Advance(healthMinWait) // the interval doubled: not yet
	if _, err := c.StatBlob(ctx, f.blobDigest); !errors.Is(err, ErrEndpointDown) {
		t.Errorf("1s after a failed probe: %v, want ErrEndpointDown", err)
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	clk.Advance(healthMinWait)
	for i := range 3 {
		if size, err := c.StatBlob(ctx, f.blobDigest); err != nil || size != int64(len(f.blob)) {
			t.Errorf("stat %d with the registry back: %d, %v", i, size, err)
		}
	}
}

// TestClientAnswersKeepEndpointUp: 404, 401 and 503 are answers: every
// operation is tried, each with its own budget.
func TestClientAnswersKeepEndpointUp(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name     string
		hook     hook
		want     error
		requests int // per operation
	}{
		{"404", status(404), hfserr.ErrNotFound, 1},
		{"401", status(401), hfserr.ErrDenied, 1},
		{"503", status(503), hfserr.ErrUnavailable, defaultRetries + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := f.client(t)
			f.setHook(failFirst(1000, "blob", tc.hook))
			defer f.setHook(nil)
			f.resetCounts()
			for range 3 {
				if _, err := c.StatBlob(context.Background(), f.blobDigest); !errors.Is(err, tc.want) || errors.Is(err, ErrEndpointDown) {
					t.Fatalf("StatBlob = %v, want %v", err, tc.want)
				}
			}
			if n := f.count("HEAD blob"); n != 3*tc.requests {
				t.Errorf("%d blob HEADs for 3 operations, want %d", n, 3*tc.requests)
			}
		})
	}
}

// TestEndpointsShared: Clients of two repositories of one registry made
// with one Endpoints find it down once: the second fails at once,
// without a request; Clients without Endpoints each pay their budget.
func TestEndpointsShared(t *testing.T) {
	for _, tc := range []struct {
		name       string
		shared     bool
		wantSecond int64 // requests of the second Client's operation
	}{
		{"shared", true, 0},
		{"each its own", false, defaultRetries + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			var eps *Endpoints
			if tc.shared {
				eps = NewEndpoints()
			}
			opts := func(o *Options) { o.Endpoints = eps }
			c1 := f.client(t, opts)
			repo := f.repo
			f.repo += "-other"
			c2 := f.client(t, opts)
			f.repo = repo
			f.srv.Close()
			ctx := context.Background()
			if _, err := c1.StatBlob(ctx, f.blobDigest); !errors.Is(err, hfserr.ErrUnavailable) {
				t.Fatalf("first client, registry refusing: %v", err)
			}
			_, err := c2.Tags(ctx)
			if got := c2.Stats().Requests; got != tc.wantSecond {
				t.Errorf("second client made %d requests (err %v), want %d", got, err, tc.wantSecond)
			}
			if tc.shared && !errors.Is(err, ErrEndpointDown) {
				t.Errorf("second client: %v, want ErrEndpointDown", err)
			}
		})
	}
}
