package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
)

// startMetrics serves the daemon's status as Prometheus metrics on
// addr/metrics (text exposition format).
func startMetrics(addr string, src *statusSource, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		st := src.status()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		metric := func(name, typ, help string, v int64) {
			fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s{repository=%q} %d\n", name, help, name, typ, name, st.Repository, v)
		}
		metric("hashfs_cache_bytes", "gauge", "Bytes of chunk data in the disk cache.", st.Cache.Usage)
		metric("hashfs_cache_max_bytes", "gauge", "The cache budget (--cache-max-size).", st.Cache.Max)
		metric("hashfs_cache_verified_blobs", "gauge", "Blobs with a trusted chunk table.", int64(st.Cache.VerifiedBlobs))
		metric("hashfs_quarantined_blobs", "gauge", "Blobs answering EIO after failing verification.", int64(st.Cache.Quarantined))
		metric("hashfs_registry_requests_total", "counter", "HTTP requests to the registry.", st.Registry.Requests)
		metric("hashfs_registry_blob_bytes_total", "counter", "Blob bytes received from the registry.", st.Registry.BlobBytes)
		metric("hashfs_registry_retries_total", "counter", "Requests repeated after a transient failure.", st.Registry.Retries)
		metric("hashfs_registry_failures_total", "counter", "Operations that gave up after the retry budget.", st.Registry.Failures)
		metric("hashfs_registry_skipped_total", "counter", "Operations not tried: the endpoint was found unreachable a moment ago.", st.Registry.Skipped)
		metric("hashfs_errors_total", "counter", "File system operations that failed with other than ENOENT.", st.Errors)
		perSource := func(name, typ, help string, vals map[string]int64, order []string) {
			fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
			for _, src := range order {
				fmt.Fprintf(w, "%s{repository=%q,source=%q} %d\n", name, st.Repository, src, vals[src])
			}
		}
		reqs, bytes, names := map[string]int64{}, map[string]int64{}, []string(nil)
		for _, s := range st.Sources {
			reqs[s.Name], bytes[s.Name] = s.Stats.Requests, s.Stats.BlobBytes
			names = append(names, s.Name)
		}
		perSource("hashfs_source_requests_total", "counter", "HTTP requests per endpoint (registry, mirror).", reqs, names)
		perSource("hashfs_source_blob_bytes_total", "counter", "Blob bytes received per endpoint.", bytes, names)
		rejected, names := map[string]int64{}, []string(nil)
		for _, s := range st.BlobSources {
			rejected[s.Name] = s.Rejected
			names = append(names, s.Name)
		}
		perSource("hashfs_source_rejected_total", "counter", "Blobs a source served bytes of that did not verify.", rejected, names)
	})
	logger.Info("serving metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	go http.Serve(ln, mux)
	return nil
}
