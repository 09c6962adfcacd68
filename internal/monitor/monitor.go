// Package monitor serves the asynqmon dashboard behind HTTP basic auth.
// asynqmon has no auth of its own and can delete, retry and archive tasks,
// so it is never served without credentials.
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
// no credentials configured every request is refused with 403.
func New(o Options) (h http.Handler, close func() error) {
	if o.User == "" || o.Password == "" {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "the dashboard is disabled: set MONITOR_USER and MONITOR_PASSWORD", http.StatusForbidden)
		}), func() error { return nil }
	}
	mon := asynqmon.New(asynqmon.Options{RootPath: Path, RedisConnOpt: o.Redis, ReadOnly: o.ReadOnly})
	return basicAuth(o.User, o.Password, mon), mon.Close
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
