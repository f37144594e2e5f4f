package fs

import (
	"context"
	"errors"
	"syscall"

	"github.com/hashfs/hashfs/internal/hfserr"
)

// toErrno is the one place where hashfs errors become errno values.
// go-fuse's own fs.ToErrno only understands unwrapped errors.
func toErrno(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, hfserr.ErrNotFound), errors.Is(err, hfserr.ErrInvalid):
		return syscall.ENOENT
	case errors.Is(err, hfserr.ErrDenied):
		return syscall.EACCES
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, hfserr.ErrIntegrity), errors.Is(err, hfserr.ErrUnavailable),
		errors.Is(err, context.DeadlineExceeded):
		return syscall.EIO
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return syscall.EIO
}
