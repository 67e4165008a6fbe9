package main

import (
	"errors"
	"fmt"
	"io"
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
	// begin starts writing what env names into the file its value names.
	begin := func(env string, start func(io.Writer) error, end func()) error {
		path := os.Getenv(env)
		if path == "" {
			return nil
		}
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("%s: %w", env, err)
		}
		if err := start(f); err != nil {
			f.Close()
			return fmt.Errorf("%s: %w", env, err)
		}
		stops = append(stops, func() error { end(); return f.Close() })
		return nil
	}
	if err := begin(envCPUProfile, pprof.StartCPUProfile, pprof.StopCPUProfile); err != nil {
		return stop, err
	}
	if err := begin(envTrace, trace.Start, trace.Stop); err != nil {
		return stop, err
	}
	return stop, nil
}
