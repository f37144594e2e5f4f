package main

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
)

// startPprof serves Go's profiles (goroutines, heap, CPU) on addr for
// debugging a live daemon. It is off unless --pprof-addr is given.
func startPprof(addr string, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	logger.Info("serving Go profiles", "url", "http://"+ln.Addr().String()+"/debug/pprof/")
	go http.Serve(ln, mux)
	return nil
}
