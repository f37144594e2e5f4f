package fetch

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/hashfs/hashfs/internal/hfserr"
)

// MaxCatalog bounds the repository names read from a registry's catalog.
const MaxCatalog = 10000

// Catalog lists the repositories of registry (for example "127.0.0.1:5000")
// through the distribution API's /v2/_catalog, following its pages up to
// MaxCatalog names. Registries that do not offer a catalog (ghcr.io, Docker
// Hub) answer with an error wrapping hfserr.ErrNotFound or hfserr.ErrDenied.
func Catalog(ctx context.Context, registry string, o Options) ([]string, error) {
	var nopts []name.Option
	if o.PlainHTTP {
		nopts = append(nopts, name.Insecure)
	}
	reg, err := name.NewRegistry(registry, nopts...)
	if err != nil {
		return nil, fmt.Errorf("registry %q: %v: %w", clip(registry), err, hfserr.ErrInvalid)
	}
	kc := o.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	base := o.Transport
	if base == nil {
		base = defaultTransport()
	}
	var names []string
	last := ""
	for len(names) < MaxCatalog {
		page, err := remote.CatalogPage(reg, last, 1000,
			remote.WithContext(ctx), remote.WithAuthFromKeychain(kc),
			remote.WithTransport(transport.NewUserAgent(base, o.UserAgent)))
		if err != nil {
			return nil, catalogError(ctx, reg.RegistryStr(), err)
		}
		names = append(names, page...)
		if len(page) < 1000 {
			break
		}
		last = page[len(page)-1]
	}
	if len(names) > MaxCatalog {
		names = names[:MaxCatalog]
	}
	return names, nil
}

func catalogError(ctx context.Context, registry string, err error) error {
	what := "catalog of " + registry
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	var te *transport.Error
	if errors.As(err, &te) {
		if te.StatusCode == http.StatusNotFound || te.StatusCode == http.StatusMethodNotAllowed {
			return fmt.Errorf("%s: not offered: %w", what, hfserr.ErrNotFound)
		}
		return classifyStatus(te.StatusCode, true, 0, fmt.Errorf("%s: %w", what, err))
	}
	return classifyTransportErr(fmt.Errorf("%s: %w", what, err))
}
