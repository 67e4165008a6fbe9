// Command hello is the workload of the images the end-to-end tests build.
// It prints its arguments as one line (or a default message) to stdout, then
// sleeps until SIGTERM or SIGINT and exits 0; with -exit it exits at once.
//
// The tests bake the message into the image configuration (as its Cmd), so
// one binary serves every test image while each image keeps its own config
// digest.
package main

import (
	"context"
	"flag"
	"fmt"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	exit := flag.Bool("exit", false, "exit after printing instead of sleeping")
	flag.Parse()

	msg := "hello from trustd-e2e"
	if flag.NArg() > 0 {
		msg = strings.Join(flag.Args(), " ")
	}
	fmt.Println(msg)
	if *exit {
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
}
