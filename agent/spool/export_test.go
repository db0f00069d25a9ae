package spool

import (
	"os"
	"time"
)

// WithFS and WithClock let tests inject failing or stalling files and a fake clock.
func WithFS(c Config, open func(path string) (File, error)) Config {
	c.openFile = func(path string) (file, error) { return open(path) }
	return c
}

func WithClock(c Config, now func() time.Time) Config {
	c.now = now
	return c
}

// File is the exported view of the writer's file interface.
type File = file

// OSCreate is the default file opener.
func OSCreate(path string) (File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o644)
}
