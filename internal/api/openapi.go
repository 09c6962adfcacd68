package api

import (
	_ "embed"
	"net/http"
)

// openAPISpec describes the routes of Handler and is served as it is.
// TestOpenAPIMatchesRoutes keeps its routes those of the table, and
// TestOpenAPIDescribesEveryAnswer its statuses, content types, schemas and
// limits what the server answers.
//
//go:embed openapi.json
var openAPISpec []byte

func serveOpenAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, err := w.Write(openAPISpec)
	return err
}
