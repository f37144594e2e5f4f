package fetch

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/hashfs/hashfs/internal/bufpool"
	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

var _ BlobSource = (*URLSource)(nil)

// URLSource reads one blob from the alternate locations that an OCI
// descriptor lists in its "urls" (foreign layers): plain HTTP(S) ranged
// GETs, each URL in turn, with the same retry policy as a Client. It never
// sends registry credentials: it has its own http.Client, without the
// Keychain.
//
// The URLs name one blob whatever digest is asked for, so a URLSource
// belongs in a Set through Set.Learn for that digest, not Set.Add; the
// bytes are verified by the cache like any others.
type URLSource struct {
	meter
	urls []*url.URL
	hc   *http.Client
	bufs *bufpool.Pool
}

// NewURLSource accepts absolute http and https URLs (anything else wraps
// hfserr.ErrInvalid). Of o it uses Transport, Retries, RetryBase, Logger and
// UserAgent and Buffers.
func NewURLSource(urls []string, o Options) (*URLSource, error) {
	if len(urls) == 0 {
		return nil, fmt.Errorf("no URLs: %w", hfserr.ErrInvalid)
	}
	s := &URLSource{bufs: o.Buffers}
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("blob URL: %w: %w", redactURLError(err), hfserr.ErrInvalid)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.Opaque != "" {
			return nil, fmt.Errorf("blob URL %q: want an absolute http or https URL: %w", clip(redactURL(u)), hfserr.ErrInvalid)
		}
		s.urls = append(s.urls, u)
	}
	base := o.Transport
	if base == nil {
		base = defaultTransport()
	}
	s.hc = &http.Client{Transport: transport.NewUserAgent(base, o.UserAgent)}
	s.meter.init(o)
	return s, nil
}

// Name is the first URL without its userinfo and query.
func (s *URLSource) Name() string { return redactURL(s.urls[0]) }

// Stats returns the running totals.
func (s *URLSource) Stats() Stats { return s.meter.snapshot() }

// StatBlob returns the size of the blob from a HEAD request, or from a
// one-byte ranged GET where HEAD is refused or says no Content-Length
// (URLs signed for GET only refuse HEAD). d names the blob in messages only.
func (s *URLSource) StatBlob(ctx context.Context, d digest.Digest) (int64, error) {
	var size int64
	err := s.each(ctx, "stat "+d.String(), func(ctx context.Context, what string, u *url.URL) error {
		var err error
		size, err = s.statAt(ctx, what, u)
		return err
	})
	return size, err
}

// FetchRange returns exactly bytes [off, off+n) of the blob, handling
// ranges like Client.FetchRange. d names the blob in messages only.
func (s *URLSource) FetchRange(ctx context.Context, d digest.Digest, off, n int64) ([]byte, error) {
	what := fmt.Sprintf("fetch %s [%d, %d+%d)", d, off, off, n)
	if err := checkRange(off, n); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if n == 0 {
		return []byte{}, nil
	}
	var out []byte
	err := s.each(ctx, what, func(ctx context.Context, what string, u *url.URL) error {
		return s.retry(ctx, what, func(ctx context.Context) error {
			resp, err := s.do(ctx, s.hc, u.Host, http.MethodGet, u.String(), rangeHeader(off, n), true)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			out, err = readRange(resp, off, n, s.bufs, func(r *http.Response) error { return statusError(r, u.Host) })
			return err
		})
	})
	return out, err
}

// each runs op on the URLs in order until one succeeds or the context ends.
// If all fail, one failure is returned as it is; more wrap ErrNotFound if
// every URL said not found, else ErrUnavailable and the causes.
func (s *URLSource) each(ctx context.Context, what string, op func(ctx context.Context, what string, u *url.URL) error) error {
	var errs []error
	missing := 0
	for _, u := range s.urls {
		err := op(ctx, what+" from "+redactURL(u), u)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		if errors.Is(err, hfserr.ErrNotFound) {
			missing++
		}
		errs = append(errs, err)
		if len(s.urls) > 1 {
			s.log.Debug("blob URL failed", "url", redactURL(u), "err", err)
		}
	}
	switch {
	case len(errs) == 1:
		return errs[0]
	case missing == len(errs):
		return fmt.Errorf("%s: none of %d URLs has it: %w", what, len(errs), hfserr.ErrNotFound)
	}
	return fmt.Errorf("%s: %w: %w", what, hfserr.ErrUnavailable, errors.Join(errs...))
}

// statAt learns the blob's size at one URL.
func (s *URLSource) statAt(ctx context.Context, what string, u *url.URL) (int64, error) {
	size := int64(-1)
	err := s.retry(ctx, what, func(ctx context.Context) error {
		resp, err := s.do(ctx, s.hc, u.Host, http.MethodHead, u.String(), nil, false)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		switch code := resp.StatusCode; {
		case code == http.StatusOK:
			size = resp.ContentLength
		case code == http.StatusNotFound || code == http.StatusGone ||
			code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
			return statusError(resp, u.Host)
		default:
			// HEAD refused (405, or 403 from a URL signed for GET): ask with GET.
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if size >= 0 {
		return size, nil
	}
	err = s.retry(ctx, what, func(ctx context.Context) error {
		resp, err := s.do(ctx, s.hc, u.Host, http.MethodGet, u.String(), rangeHeader(0, 1), true)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		size, err = sizeFromRange(resp, func(r *http.Response) error { return statusError(r, u.Host) })
		return err
	})
	if err != nil {
		return 0, err
	}
	return size, nil
}
