package query

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed ui
var uiFiles embed.FS

// uiHandler serves the single-page UI; it only calls the JSON API.
func uiHandler() http.Handler {
	sub, _ := fs.Sub(uiFiles, "ui")
	return http.FileServerFS(sub)
}
