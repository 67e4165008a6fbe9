// Command noop-validator is an NRI validator plugin that allows every
// container and does nothing else: the floor of what NRI validation costs
// a container creation whatever the validator does, measured by
// test/e2e's BenchmarkCreateContainer in a process of its own, as trustd
// runs. It prints "ready" once registered and runs until killed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

type validator struct{}

// errorsOnly is NRI's logger, quiet but for errors.
type errorsOnly struct{}

func (errorsOnly) Debugf(context.Context, string, ...any) {}
func (errorsOnly) Infof(context.Context, string, ...any)  {}
func (errorsOnly) Warnf(context.Context, string, ...any)  {}
func (errorsOnly) Errorf(_ context.Context, f string, a ...any) {
	fmt.Fprintf(os.Stderr, "noop-validator: "+f+"\n", a...)
}

// ValidateContainerAdjustment allows every container.
func (validator) ValidateContainerAdjustment(context.Context, *api.ValidateContainerAdjustmentRequest) error {
	return nil
}

func main() {
	name := flag.String("name", "noop-validator", "the plugin's name (the node's required_plugins)")
	socket := flag.String("socket", "", "NRI socket")
	flag.Parse()
	st, err := stub.New(validator{}, stub.WithPluginName(*name), stub.WithPluginIdx("50"), stub.WithSocketPath(*socket), stub.WithLogger(errorsOnly{}))
	if err != nil {
		fmt.Fprintln(os.Stderr, "noop-validator:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	start, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := st.Start(start); err != nil {
		fmt.Fprintln(os.Stderr, "noop-validator:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	<-ctx.Done()
	st.Stop()
}
