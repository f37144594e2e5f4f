package main

// Temporary: replaced once fetch's Layout, LoadHosts and Mirrored land.

import (
	"github.com/hashfs/hashfs/fetch"
)

func loadHostsPending(string, string) ([]fetch.Endpoint, error) { return nil, nil }

func newMirroredPending(cs ...*fetch.Client) fetchRepo { return cs[0] }

type endpointStatsPending struct {
	Name  string
	Stats fetch.Stats
}
