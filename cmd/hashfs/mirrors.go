package main

import (
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/hashfs/hashfs/fetch"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// openRepository returns the fetchRepo of the repository ref. When
// hostsDir holds a containerd hosts.toml for its registry, the mirrors it
// lists are asked first, in order, and the registry (the file's server)
// last; otherwise the registry alone.
func openRepository(ref, hostsDir string, o fetch.Options) (fetchRepo, error) {
	var nopts []name.Option
	if o.PlainHTTP {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.NewRepository(ref, nopts...)
	if err != nil {
		return nil, fmt.Errorf("repository %q: %v: %w", clip(ref), err, hfserr.ErrInvalid)
	}
	var eps []fetch.Endpoint
	if hostsDir != "" {
		if eps, err = fetch.LoadHosts(hostsDir, r.RegistryStr()); err != nil {
			return nil, fmt.Errorf("--hosts-dir: %w", err)
		}
	}
	if len(eps) == 0 {
		return fetch.New(ref, o)
	}
	clients := make([]*fetch.Client, 0, len(eps))
	for _, ep := range eps {
		eo := o
		eo.Endpoint = ep
		c, err := fetch.New(ref, eo)
		if err != nil {
			return nil, fmt.Errorf("%s at %s: %w", ref, ep, err)
		}
		clients = append(clients, c)
	}
	if len(clients) == 1 {
		return clients[0], nil
	}
	return fetch.NewMirrored(clients...), nil
}
