// Package seed pushes sample artifacts to a registry: the demo set the
// README walks through, and fixtures for tests that need a registry
// with real content (ORAS-style artifacts, a multi-platform index and
// a config-carrying image).
package seed

import (
	"bytes"
	_ "embed"
)

//go:embed vostok.icecore.co2
var vostok []byte

// VostokDigest is the sha256 of Vostok().
const VostokDigest = "sha256:9412325831dab22aeebdd674b6eb53ba6b7bdd04bb99a4dbb21ddff646287e37"

// Vostok returns the Vostok ice core CO2 record (Barnola et al., 2003):
// 21 header lines, then 363 tab-separated rows of depth (m), age of the
// ice (yr BP), mean age of the air (yr BP) and CO2 (ppmv). In R:
//
//	read.table(path, skip = 21, sep = "\t",
//	           col.names = c("depth", "age.ice", "age.air", "co2"))
func Vostok() []byte { return bytes.Clone(vostok) }
