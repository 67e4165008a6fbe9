// Command pause is the sandbox ("pause") program of the images the
// end-to-end tests build: it does nothing until SIGTERM or SIGINT, then exits 0.
// It is built statically (CGO_ENABLED=0) and runs as PID 1 in its container,
// where a signal without a handler would be ignored, so it installs one.
package main

import (
	"context"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
}
