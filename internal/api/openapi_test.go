package api

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// TestOpenAPIMatchesRoutes: the served description is a valid OpenAPI 3
// document, every route of the API is described, and every described route
// exists.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(openAPISpec)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI 3 document: %v", err)
	}
	var described []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			described = append(described, strings.ToUpper(method)+" "+path)
		}
	}
	var served []string
	for _, rt := range (&Server{}).routes() {
		served = append(served, rt.method+" "+rt.path)
	}
	slices.Sort(described)
	slices.Sort(served)
	for _, r := range served {
		if !slices.Contains(described, r) {
			t.Errorf("%s is served but not described in openapi.json", r)
		}
	}
	for _, r := range described {
		if !slices.Contains(served, r) {
			t.Errorf("%s is described in openapi.json but not served", r)
		}
	}
	// Routes that need a key say so; the public ones opt out.
	for _, rt := range (&Server{}).routes() {
		op := doc.Paths.Find(rt.path).GetOperation(rt.method)
		public := op.Security != nil && len(*op.Security) == 0
		if public == rt.auth {
			t.Errorf("%s %s: the description says public=%v, the code auth=%v", rt.method, rt.path, public, rt.auth)
		}
	}
}
