// Command fakenotify stands in for `trustd run` in the harness's own tests:
// it logs a JSON line to stderr, sends READY=1 to $NOTIFY_SOCKET, logs a
// decision-like line, and exits 0 on SIGTERM.
package main

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	log.Info("starting", "args", os.Args[1:])
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()

	conn, err := net.Dial("unixgram", os.Getenv("NOTIFY_SOCKET"))
	if err != nil {
		log.Error("notify", "err", err)
		os.Exit(1)
	}
	if _, err := conn.Write([]byte("STATUS=ready\nREADY=1\n")); err != nil {
		log.Error("notify", "err", err)
		os.Exit(1)
	}
	log.Info("decision", "decision", "audit", "image", "example.test/demo/hello:1.0")
	<-ctx.Done()
	_, _ = conn.Write([]byte("STOPPING=1\n"))
	log.Info("stopped")
}
