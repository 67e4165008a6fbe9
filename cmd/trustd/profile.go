package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"runtime/trace"
)

// Profiling of the daemon, off unless asked for by the environment (never
// by default, never over a socket):
//
//	TRUSTD_CPUPROFILE=FILE   CPU profile of `trustd run` from start to exit
//	TRUSTD_TRACE=FILE        Go execution trace of `trustd run` from start to exit
//
// Both files are written when the daemon stops (SIGTERM or SIGINT).
const (
	envCPUProfile = "TRUSTD_CPUPROFILE"
	envTrace      = "TRUSTD_TRACE"
)

// startProfiling starts what envCPUProfile and envTrace ask for and returns
// the function that stops it and closes the files.
func startProfiling() (stop func() error, err error) {
	var stops []func() error
	stop = func() error {
		var errs []error
		for i := len(stops) - 1; i >= 0; i-- {
			errs = append(errs, stops[i]())
		}
		return errors.Join(errs...)
	}
	if path := os.Getenv(envCPUProfile); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return stop, fmt.Errorf("%s: %w", envCPUProfile, err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return stop, fmt.Errorf("%s: %w", envCPUProfile, err)
		}
		stops = append(stops, func() error { pprof.StopCPUProfile(); return f.Close() })
	}
	if path := os.Getenv(envTrace); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return stop, fmt.Errorf("%s: %w", envTrace, err)
		}
		if err := trace.Start(f); err != nil {
			f.Close()
			return stop, fmt.Errorf("%s: %w", envTrace, err)
		}
		stops = append(stops, func() error { trace.Stop(); return f.Close() })
	}
	return stop, nil
}
