package first

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSuccess(t *testing.T) {
	errNo := errors.New("no")
	tests := []struct {
		name    string
		answers []error         // nil = success
		delays  []time.Duration // per index
		wantI   int
		wantErr int
	}{
		{"one ok", []error{nil}, []time.Duration{0}, 0, 0},
		{"fast failure then ok", []error{errNo, nil}, []time.Duration{0, 10 * time.Millisecond}, 1, 0},
		{"faster ok wins", []error{nil, nil}, []time.Duration{200 * time.Millisecond, 0}, 1, 0},
		{"all fail", []error{errNo, errNo, errNo}, []time.Duration{0, 0, 0}, -1, 3},
		{"none", nil, nil, -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cancelled := make(chan int, len(tt.answers))
			i, v, errs := Success(context.Background(), len(tt.answers), func(ctx context.Context, i int) (int, error) {
				select {
				case <-time.After(tt.delays[i]):
				case <-ctx.Done():
					cancelled <- i
					return 0, ctx.Err()
				}
				return i * 10, tt.answers[i]
			})
			if i != tt.wantI || len(errs) != tt.wantErr || (i >= 0 && v != i*10) {
				t.Errorf("Success = %d, %d, %v; want index %d and %d errors", i, v, errs, tt.wantI, tt.wantErr)
			}
			if tt.name == "faster ok wins" {
				select {
				case c := <-cancelled:
					if c != 0 {
						t.Errorf("cancelled %d, want the slow call 0", c)
					}
				case <-time.After(time.Second):
					t.Error("the slower call was not cancelled")
				}
			}
		})
	}
}
