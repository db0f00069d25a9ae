// Command mercury runs every Mercury daemon as a subcommand.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// commands maps a subcommand to its runner; each parses its own flags and returns when ctx
// ends (SIGINT/SIGTERM) after draining.
var commands = map[string]func(ctx context.Context, args []string) error{
	"broker": runBroker,
	"ship":   runShip,
}

func main() {
	if len(os.Args) < 2 || commands[os.Args[1]] == nil {
		names := make([]string, 0, len(commands))
		for n := range commands {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: mercury <command> [flags]\ncommands: %v\n", names)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := commands[os.Args[1]](ctx, os.Args[2:])
	stop()
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "mercury %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
