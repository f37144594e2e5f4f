package integration

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/hashfs/hashfs/internal/seed"
)

// TestDistributionReaders reads the Vostok record through a mount of the
// CNCF registry with the tools people use: cat, sha256sum, R and pandas.
func TestDistributionReaders(t *testing.T) {
	needFUSE(t)
	needTool(t, "docker-registry")
	needTool(t, "Rscript")
	needPandas(t)
	host, _ := startDistribution(t)
	repo := host + "/lab/icecores"
	tags := pushSeed(t, repo)
	m := mount(t, repo)

	out := runCmd(t, "ls", "-l", m.path("tags")+"/")
	for tag, d := range tags {
		if want := tag + " -> ../manifests/" + d; !strings.Contains(out, want) {
			t.Errorf("ls -l tags/ has no line with %q:\n%s", want, out)
		}
	}

	paths := map[string]string{
		"by tag":    m.path("tags/vostok/vostok.icecore.co2"),
		"by digest": m.path("sha256/" + vostokHex),
	}
	for name, p := range paths {
		t.Run(name, func(t *testing.T) {
			if got := runCmd(t, "cat", p); !bytes.Equal([]byte(got), seed.Vostok()) {
				t.Errorf("cat %s: %d bytes, want the fixture's %d", p, len(got), len(seed.Vostok()))
			}
			if got := sha256sum(t, p); got != vostokHex {
				t.Errorf("sha256sum %s = %s", p, got)
			}
			r := fmt.Sprintf(`x <- read.table(%q, skip=20, sep="\t"); cat(nrow(x), ncol(x))`, p)
			if got := strings.TrimSpace(runCmd(t, "Rscript", "-e", r)); got != "363 4" {
				t.Errorf("R read.table: rows and columns %q, want \"363 4\"", got)
			}
			py := fmt.Sprintf(`import pandas as pd; print(pd.read_csv(%q, sep="\t", skiprows=20, header=None).shape)`, p)
			if got := strings.TrimSpace(runCmd(t, pythonBin, "-c", py)); got != "(363, 4)" {
				t.Errorf("pandas read_csv: shape %q, want (363, 4)", got)
			}
		})
	}
}
