// Package ui is the query service's web UI: static pages embedded in the binary (no build
// step) that only call the JSON API.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed assets
var files embed.FS

// Handler serves the UI's files.
func Handler() http.Handler {
	sub, _ := fs.Sub(files, "assets")
	return http.FileServerFS(sub)
}
