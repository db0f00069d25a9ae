package main

import (
	"flag"
	"fmt"
)

// parseArgs parses flags wherever they stand among the positional arguments (`mercury search
// order_id=1 --service api` and `mercury search --service api order_id=1` mean the same), up
// to a "--", after which everything is positional. It returns the positional arguments.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// parseFlags parses a daemon's flags; daemons take no positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	pos, err := parseArgs(fs, args)
	if err == nil && len(pos) > 0 {
		err = fmt.Errorf("unexpected arguments %q (flags are written --name value)", pos)
	}
	return err
}
