package fetch

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/hashfs/hashfs/internal/hfserr"
)

func TestCatalog(t *testing.T) {
	f := newFixture(t)
	host := strings.TrimPrefix(f.srv.URL, "http://")
	tests := []struct {
		name    string
		hook    hook
		want    []string
		wantErr error
	}{
		{name: "listed", want: []string{"test/repo"}},
		{name: "not offered", wantErr: hfserr.ErrNotFound,
			hook: func(w http.ResponseWriter, r *http.Request, next http.Handler) {
				if strings.HasSuffix(r.URL.Path, "/_catalog") {
					http.NotFound(w, r)
					return
				}
				next.ServeHTTP(w, r)
			}},
		{name: "denied", wantErr: hfserr.ErrDenied,
			hook: func(w http.ResponseWriter, r *http.Request, next http.Handler) {
				if strings.HasSuffix(r.URL.Path, "/_catalog") {
					w.WriteHeader(http.StatusForbidden)
					return
				}
				next.ServeHTTP(w, r)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.setHook(tt.hook)
			got, err := Catalog(context.Background(), host, Options{Retries: -1})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Catalog = %v, %v; want %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("Catalog = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := Catalog(context.Background(), "UPPER CASE", Options{}); !errors.Is(err, hfserr.ErrInvalid) {
		t.Errorf("bad registry name: %v, want ErrInvalid", err)
	}
}
