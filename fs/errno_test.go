package fs

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/hashfs/hashfs/internal/hfserr"
)

func TestToErrno(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{fmt.Errorf("blob x: %w", hfserr.ErrNotFound), syscall.ENOENT},
		{fmt.Errorf("digest: %w", hfserr.ErrInvalid), syscall.ENOENT},
		{fmt.Errorf("token: %w", hfserr.ErrDenied), syscall.EACCES},
		{fmt.Errorf("sha256 mismatch: %w", hfserr.ErrIntegrity), syscall.EIO},
		{fmt.Errorf("503 x5: %w", hfserr.ErrUnavailable), syscall.EIO},
		{context.DeadlineExceeded, syscall.EIO},
		{fmt.Errorf("wait: %w", context.Canceled), syscall.EINTR},
		{errors.New("something else"), syscall.EIO},
	} {
		if got := toErrno(tc.err); got != tc.want {
			t.Errorf("toErrno(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
