package cache

import "time"

// spanBytes is how much one request of a verification asks for, at
// first and wherever the link is slow per request: docker-registry's
// read buffer, and enough that a fast link is not spent on per-request
// costs, while 8 of them fit the window and keep 8 connections busy.
const spanBytes = 4 << 20

// bigSpanBytes is how much one request asks for on a source that
// proves fast. There the per-request costs, not the link, are the
// limit: docker-registry spends a fresh 4 MiB buffer and its CPU on
// every request whatever its size, and on a registry sharing the host
// that CPU is taken from hashing. On loopback 16 MiB requests cut the
// registry's CPU per GiB by about half (2.4 to 1.3 s).
const bigSpanBytes = 16 << 20

// Rates (bytes over the time from asking to the last byte, latency
// included) that decide between the two span sizes; see spanSizer.
const (
	// probeRate is what the lone first span must reach for big spans
	// to be tried. A link capped per connection, or far away, stays
	// well below: 4 MiB at 25 MB/s with 40 ms of latency is 20 MB/s.
	// A registry on loopback answered a cold first 4 MiB at 100-110
	// MB/s (it opens the blob and reads the disk first).
	probeRate = 50e6
	// bigSpanRate is what big spans must keep on average, two in
	// flight. A source that caps each connection below it (S3, which
	// serves ECR's blobs, is often quoted at about 90 MB/s a
	// connection) goes back to small spans, 8 at a time; on loopback
	// most 16 MiB spans came at 170-560 MB/s.
	bigSpanRate = 100e6
)

// spanChunks is how many chunks one span holds: up to spanBytes, and
// few enough that at least 8 spans fit the window of w chunks.
func spanChunks(cs, w int64) int64 {
	return max(1, min(spanBytes/cs, w/8))
}

// bigSpanChunks is spanChunks on a fast source: up to bigSpanBytes, and
// two spans to the window, so one is fetched while the other is hashed.
func bigSpanChunks(cs, w int64) int64 {
	return max(spanChunks(cs, w), min(bigSpanBytes/cs, w/2))
}

// spanSizer chooses the size of a verification's next span from how its
// fetched spans came. With 8 requests in flight on a 2-core machine
// each gets a share of the CPU, not of the link, so only a request
// alone says what the link does: the first span is fetched alone
// (probing), and if it reaches probeRate the rest go in big spans for
// as long as they average bigSpanRate. Once small, a verification stays
// small.
type spanSizer struct {
	small, big  int64   // chunks
	cs          int64   // chunk size
	probe, keep float64 // probeRate and bigSpanRate; tests lower them
	state       spanState
	bytes       int64         // of the big spans fetched so far
	took        time.Duration // fetching them
}

type spanState int

const (
	probing spanState = iota
	bigSpans
	smallSpans
)

func newSpanSizer(cs, w int64, probe, keep float64) *spanSizer {
	return &spanSizer{small: spanChunks(cs, w), big: bigSpanChunks(cs, w), cs: cs, probe: probe, keep: keep}
}

// probeWait is how long the lone first span may take and still be fast:
// once it is out longer, the verification gives up on big spans and
// starts the others (on wan this saves most of a round trip and a
// span's transfer before the first byte).
func (z *spanSizer) probeWait() time.Duration {
	if z.probe <= 0 {
		return time.Hour
	}
	return time.Duration(float64(z.small*z.cs) / z.probe * float64(time.Second))
}

// giveUp ends a probe that is taking too long: small spans.
func (z *spanSizer) giveUp() {
	if z.state == probing {
		z.state = smallSpans
	}
}

// next returns how many chunks the next span holds, and false if no
// span may start until the first one has come back (started is how
// many chunks have been asked for so far).
func (z *spanSizer) next(started int64) (int64, bool) {
	switch z.state {
	case probing:
		return z.small, started == 0
	case bigSpans:
		return z.big, true
	default:
		return z.small, true
	}
}

// observe takes a span the verification waited for: chunks long, n
// bytes fetched in took. A span read back from the cache (fetched
// false), or under a megabyte, says nothing about the link; it ends a
// probe with small spans.
func (z *spanSizer) observe(chunks int64, n int, took time.Duration, fetched bool) {
	informative := fetched && n >= 1<<20 && took > 0
	switch z.state {
	case probing:
		z.state = smallSpans
		if informative && float64(n) >= z.probe*took.Seconds() {
			z.state = bigSpans
		}
	case bigSpans:
		if !informative || chunks < z.big {
			return // the probe span, or the blob's short tail
		}
		z.bytes += int64(n)
		z.took += took
		if float64(z.bytes) < z.keep*z.took.Seconds() {
			z.state = smallSpans
		}
	}
}
