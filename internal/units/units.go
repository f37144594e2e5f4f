// Package units parses byte sizes such as "10GiB" or "512M".
package units

import (
	"fmt"
	"strconv"
	"strings"
)

var suffixes = []struct {
	s string
	m int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"TB", 1000 * 1000 * 1000 * 1000},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1},
}

// ParseSize parses a non-negative size with an optional unit suffix.
// Bare K/M/G/T are binary (as in dd and rclone); KB/MB/GB are decimal.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, sf := range suffixes {
		if len(t) > len(sf.s) && strings.EqualFold(t[len(t)-len(sf.s):], sf.s) {
			mult = sf.m
			t = strings.TrimSpace(t[:len(t)-len(sf.s)])
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid size %q: want a number with an optional unit such as 512MiB or 10G", s)
	}
	f := v * float64(mult)
	if f > 1<<62 {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return int64(f), nil
}

// Size is a pflag.Value holding a byte size.
type Size int64

func (z *Size) String() string { return strconv.FormatInt(int64(*z), 10) }

// Set parses s.
func (z *Size) Set(s string) error {
	v, err := ParseSize(s)
	if err != nil {
		return err
	}
	*z = Size(v)
	return nil
}

// Type names the flag type in help output.
func (z *Size) Type() string { return "size" }
