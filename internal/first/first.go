// Package first asks several places the same question at once and keeps
// the first answer.
package first

import "context"

// Success calls fn(ctx, i) for every i in [0, n) concurrently and returns
// the index and value of the first call that succeeds, cancelling the
// context of the others. When none succeeds, i is -1 and errs holds every
// error, in the order they arrived. fn must return once ctx ends.
func Success[T any](ctx context.Context, n int, fn func(ctx context.Context, i int) (T, error)) (i int, v T, errs []error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		i   int
		v   T
		err error
	}
	ch := make(chan answer, n) // buffered: late answers never block
	for i := range n {
		go func() {
			v, err := fn(ctx, i)
			ch <- answer{i, v, err}
		}()
	}
	errs = make([]error, 0, n)
	for range n {
		a := <-ch
		if a.err == nil {
			return a.i, a.v, nil
		}
		errs = append(errs, a.err)
	}
	var zero T
	return -1, zero, errs
}
