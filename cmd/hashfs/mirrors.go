package main

import (
	"fmt"

	"github.com/hashfs/hashfs/fetch"
)

// openRepository returns the fetchRepo of the repository ref. When
// hostsDir holds a containerd hosts.toml for its registry, the mirrors it
// lists are asked first, in order, and the registry (the file's server)
// last; otherwise the registry alone.
func openRepository(ref, hostsDir string, o fetch.Options) (fetchRepo, error) {
	c, err := fetch.New(ref, o)
	if err != nil {
		return nil, err
	}
	if hostsDir == "" {
		return c, nil
	}
	eps, err := fetch.LoadHosts(hostsDir, c.Endpoint().Host)
	if err != nil {
		return nil, fmt.Errorf("--hosts-dir: %w", err)
	}
	if len(eps) == 1 && plainUpstream(eps[0], c.Endpoint().Host) {
		return c, nil
	}
	m, err := fetch.NewMirroredAt(ref, eps, o)
	if err != nil {
		return nil, fmt.Errorf("--hosts-dir: %w", err)
	}
	return m, nil
}

// plainUpstream reports whether ep is the registry itself with nothing
// configured for it.
func plainUpstream(ep fetch.Endpoint, host string) bool {
	return ep.Server && ep.Host == host && ep.Scheme == "" && ep.Path == "" && len(ep.CA) == 0 && !ep.SkipVerify
}
