// Package hfserr holds the error kinds that cross package boundaries.
// Packages wrap them with %w; fs maps them to errno in one place.
package hfserr

import "errors"

var (
	// ErrNotFound: the registry or a manifest has no such object (ENOENT).
	ErrNotFound = errors.New("not found")
	// ErrDenied: the registry refused our credentials (EACCES).
	ErrDenied = errors.New("access denied")
	// ErrIntegrity: bytes did not match their digest (EIO).
	ErrIntegrity = errors.New("integrity check failed")
	// ErrUnavailable: the registry could not be reached within the retry budget (EIO).
	ErrUnavailable = errors.New("registry unavailable")
	// ErrInvalid: malformed input such as a bad digest or document (ENOENT or EINVAL).
	ErrInvalid = errors.New("invalid input")
	// ErrNoSpace: the cache cannot hold more data; callers read around the cache.
	ErrNoSpace = errors.New("cache full")
)
