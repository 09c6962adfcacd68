// Package monitor serves the asynqmon dashboard behind HTTP basic auth and
// a cross-origin check. asynqmon has no auth of its own and can delete,
// retry and archive tasks and pause queues, so it is never served without
// credentials; and since a browser sends cached basic-auth credentials with
// any request to the dashboard's origin, including a form another site
// posts there, it never takes a change from another origin.
package monitor

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
)

// Path is where the dashboard is mounted.
const Path = "/monitor"

// Options configure the dashboard.
type Options struct {
	Redis    asynq.RedisConnOpt
	User     string
	Password string
	ReadOnly bool
}

// New returns the dashboard handler, to be mounted at Path and Path+"/". With
// no credentials configured every request is refused with 403. A request
// that would change something (asynqmon's POSTs and DELETEs) and that a
// browser marks as coming from another origin is refused with 403 too.
func New(o Options) (h http.Handler, close func() error) {
	if o.User == "" || o.Password == "" {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "the dashboard is disabled: set MONITOR_USER and MONITOR_PASSWORD", http.StatusForbidden)
		}), func() error { return nil }
	}
	mon := asynqmon.New(asynqmon.Options{RootPath: Path, RedisConnOpt: o.Redis, ReadOnly: o.ReadOnly})
	return sameOrigin(basicAuth(o.User, o.Password, mon)), mon.Close
}

// sameOrigin refuses unsafe requests from another origin: asynqmon takes a
// POST with any content type and no body (pause a queue, archive, delete or
// run tasks), which is exactly what a form on any web page can send, and
// the operator's browser attaches the credentials it cached for the
// dashboard. net/http's CrossOriginProtection reads Sec-Fetch-Site (sent by
// every browser since 2023), else compares Origin with Host; GET, HEAD and
// OPTIONS pass (asynqmon changes nothing on them), and so do requests with
// neither header: curl and scripts, which no other site can make on the
// operator's behalf. It runs before basic auth, so a refused request never
// reaches asynqmon and never makes the browser prompt for credentials.
func sameOrigin(next http.Handler) http.Handler {
	return http.NewCrossOriginProtection().Handler(next)
}

func basicAuth(user, password string, next http.Handler) http.Handler {
	// Comparing fixed-size digests keeps the comparison constant-time
	// whatever the lengths of the inputs.
	wantUser, wantPass := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		gotUser, gotPass := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		userOK := subtle.ConstantTimeCompare(gotUser[:], wantUser[:])
		passOK := subtle.ConstantTimeCompare(gotPass[:], wantPass[:])
		if !ok || userOK&passOK != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="onboard monitor", charset="UTF-8"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
