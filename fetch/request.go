package fetch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// do issues one request to the registry on hc (see meter.do).
func (c *Client) do(ctx context.Context, hc *http.Client, method, rawURL string, hdr http.Header, blob bool) (*http.Response, error) {
	return c.meter.do(ctx, hc, c.reg.RegistryStr(), method, rawURL, hdr, blob)
}

// do issues one request on hc and returns the response with its body wrapped
// so that closing it logs the exchange (method, path, status, bytes,
// duration) at Debug level. origin is the host the request is addressed to;
// a response from any other host was redirected. blob marks blob bodies,
// whose bytes count towards Stats.BlobBytes. Transport failures come back
// classified (see classifyTransportErr). Headers and query strings are never
// logged: they may carry credentials.
func (m *meter) do(ctx context.Context, hc *http.Client, origin, method, rawURL string, hdr http.Header, blob bool) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	start := time.Now()
	m.requests.Add(1)
	resp, err := hc.Do(req)
	if err != nil {
		err = redactURLError(err)
		m.log.Debug("registry request", "method", method, "path", req.URL.Path,
			"duration", time.Since(start), "err", err)
		return nil, classifyTransportErr(err)
	}
	// Only successful blob bodies count as blob bytes, not error documents.
	blob = blob && resp.StatusCode >= 200 && resp.StatusCode < 300
	resp.Body = &loggedBody{rc: resp.Body, m: m, origin: origin, blob: blob, resp: resp, path: req.URL.Path, start: start}
	return resp, nil
}

// loggedBody counts bytes read and logs the exchange once, on Close.
type loggedBody struct {
	rc     io.ReadCloser
	m      *meter
	origin string
	blob   bool
	resp   *http.Response
	path   string
	start  time.Time
	n      int64
	once   sync.Once
}

func (b *loggedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n += int64(n)
	if b.blob && n > 0 {
		b.m.blobBytes.Add(int64(n))
	}
	return n, err
}

func (b *loggedBody) Close() error {
	err := b.rc.Close()
	b.once.Do(func() {
		attrs := []any{"method", b.resp.Request.Method, "path", b.path,
			"status", b.resp.StatusCode, "bytes", b.n, "duration", time.Since(b.start)}
		if h := b.resp.Request.URL.Host; h != b.origin {
			attrs = append(attrs, "redirected_to", h)
		}
		b.m.log.Debug("registry request", attrs...)
	})
	return err
}

// fromOrigin reports whether resp was served by origin itself rather than
// by a host it redirected to.
func fromOrigin(resp *http.Response, origin string) bool {
	return resp.Request == nil || resp.Request.URL.Host == origin
}

// statusError describes an unwanted response from the registry (see
// statusError).
func (c *Client) statusError(resp *http.Response) error {
	return statusError(resp, c.reg.RegistryStr())
}

// statusError describes an unwanted response to a request addressed to
// origin and classifies it. It reads a little of the body for the server's
// error code; the caller closes it.
func statusError(resp *http.Response, origin string) error {
	cause := fmt.Errorf("HTTP %d%s", resp.StatusCode, errorDetail(resp.Body))
	direct := fromOrigin(resp, origin)
	if !direct {
		cause = fmt.Errorf("%w from redirect target %s", cause, resp.Request.URL.Host)
	}
	ra := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return classifyStatus(resp.StatusCode, direct, ra, cause)
}

// errorDetail extracts " (CODE: message)" from an OCI error body, or "".
func errorDetail(body io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(body, 4<<10))
	var e struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(b, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	parts := make([]string, 0, len(e.Errors))
	for _, d := range e.Errors {
		parts = append(parts, clip(strings.TrimSpace(d.Code+": "+d.Message)))
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

// redactURLError rewrites a *url.Error so its message carries no userinfo
// or query string: a redirected blob URL is often signed, and the signature
// is a credential.
func redactURLError(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	u, perr := url.Parse(ue.URL)
	if perr != nil {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return fmt.Errorf("%s %s: %w", ue.Op, redactURL(u), ue.Err)
}

// redactURL returns u without userinfo or fragment and with any query
// replaced by "REDACTED".
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	if c.RawQuery != "" || c.ForceQuery {
		c.RawQuery = "REDACTED"
	}
	c.Fragment, c.RawFragment = "", ""
	return c.String()
}
